"""GT204: NumPy or Python conversions on the path from trainable variables to the loss."""

from __future__ import annotations

from gradtrace.rules.base import Invalid, Rule, Truth
from gradtrace.rules.gt203_tf_stop_gradient_only_path import lost_message


class NumpyInTape(Rule):
    code = "GT204"
    name = "numpy-conversion-in-tape"
    summary = ".numpy(), NumPy functions, float()/int() or tf.numpy_function cut trainable variables from the loss."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `.numpy()`, NumPy/SciPy/`math` functions, `float()`/`int()`, `.item()`/`.tolist()` and
    `tf.numpy_function` applied to a value that depends on trainable variables, when that value is on
    the only path from those variables to the loss — also inside helper functions called under the
    tape. Metrics and logging computed from the same tensors, off the loss path or after
    `tape.gradient`, stay quiet. `tf.py_function` stays quiet: the tape records the TensorFlow ops its
    function runs eagerly, so it is differentiable. The function given to `tf.numpy_function` is followed
    too: a `.numpy()` it applies to a model it reads itself (`self.model(self.states).numpy()`) is found there.

    `model.predict(x)` counts too: it runs the model outside the tape and returns NumPy.

    A `.numpy()` that runs in a traced graph — under `@tf.function`, or in the loss `compile` was given,
    which `model.fit` traces unless `run_eagerly=True` — is flagged wherever it is: there it raises
    AttributeError. The function `tf.py_function` runs is eager, and stays quiet.

    ## Why is this bad?
    A NumPy array or Python number has no history: the variables before it get a `None` gradient.
    The tape records TensorFlow operations only; converting back with
    `tf.constant`/`tf.convert_to_tensor` makes a new constant. Keep this path in TensorFlow ops.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        h = np.tanh(w.numpy())
        loss = tf.reduce_sum(tf.constant(h) ** 2)
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        h = tf.tanh(w)
        loss = tf.reduce_sum(h ** 2)
    ```
    For a NumPy-only operation, wrap it in `@tf.custom_gradient` with a TensorFlow backward.

    ## Fix safety
    No automatic fix: the TensorFlow equivalent of a NumPy call is not always exact.
    """
    valid = (
        """
        import numpy as np
        import tensorflow as tf

        w = tf.Variable([1.0, 2.0])
        with tf.GradientTape() as tape:
            pred = w * 3.0
            loss = tf.reduce_sum(pred ** 2)
        g = tape.gradient(loss, w)
        acc = float(np.mean(pred.numpy() > 0))
        print(loss.numpy(), acc)
        """,
        """
        import tensorflow as tf

        w = tf.Variable([1.0, 2.0])
        history = []
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(w ** 2)
            history.append(float(loss))
        g = tape.gradient(loss, w)
        """,
        """
        import tensorflow as tf

        w = tf.Variable([1.0, 2.0])

        def mish(t):
            return t * tf.tanh(tf.math.softplus(t))

        with tf.GradientTape() as tape:
            h = tf.py_function(mish, [w * 3.0], Tout=tf.float32)
            loss = tf.reduce_sum(h ** 2)
        g = tape.gradient(loss, w)
        """,
        """
        import numpy as np
        import tensorflow as tf

        w = tf.Variable([[0.5], [0.5]])
        opt = tf.keras.optimizers.SGD(0.1)


        def spectral_penalty(values):
            return np.float32(np.abs(np.fft.rfft(values.numpy(), axis=0)).mean())


        @tf.function
        def train_step(x, y):
            with tf.GradientTape() as tape:
                pred = x @ w
                penalty = tf.py_function(spectral_penalty, [pred], tf.float32)
                loss = tf.reduce_mean(tf.square(y - pred)) + penalty
            grads = tape.gradient(loss, [w])
            opt.apply_gradients(zip(grads, [w]))
            return loss


        train_step(tf.ones([4, 2]), tf.ones([4, 1]))
        """,
    )
    invalid = (
        Invalid(
            """
            import numpy as np
            import tensorflow as tf

            model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])
            x = np.ones([4, 3], np.float32)


            def predict():
                return model(x).numpy()  # expect: GT204


            with tf.GradientTape() as tape:
                pred = tf.numpy_function(predict, [], tf.float32)
                loss = tf.reduce_mean(pred ** 2)
            grads = tape.gradient(loss, model.trainable_variables)
            """,
            truth=Truth(grads={"grads[0]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
            x = tf.ones([4, 2])
            with tf.GradientTape() as tape:
                residual = model.predict(x, verbose=0) - 1.0  # expect: GT204
                loss = tf.reduce_mean(tf.square(residual))
            grads = tape.gradient(loss, model.trainable_variables)
            """,
            truth=Truth(grads={"grads[0]": "none", "grads[1]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import numpy as np
            import tensorflow as tf

            w = tf.Variable([1.0, 2.0])
            with tf.GradientTape() as tape:
                h = np.tanh(w.numpy())  # expect: GT204
                loss = tf.reduce_sum(tf.constant(h) ** 2)
            g = tape.gradient(loss, w)
            """,
            truth=Truth(grads={"g": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            w = tf.Variable([1.0, 2.0])
            b = tf.Variable(0.5)

            def penalty(v):
                return float(tf.reduce_sum(v ** 2))  # expect: GT204

            with tf.GradientTape() as tape:
                loss = b * 2.0 + penalty(w)
            grads = tape.gradient(loss, [w, b])
            """,
            truth=Truth(grads={"grads[0]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import numpy as np
            import tensorflow as tf

            w = tf.Variable([1.0, 2.0])

            def mish(t):
                return t * np.tanh(np.log1p(np.exp(t)))

            with tf.GradientTape() as tape:
                h = tf.numpy_function(mish, [w * 3.0], Tout=tf.float32)  # expect: GT204
                loss = tf.reduce_sum(h ** 2)
            g = tape.gradient(loss, w)
            """,
            truth=Truth(grads={"g": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import keras
            import numpy as np
            import tensorflow as tf

            x = np.random.rand(32, 4).astype("float32")
            y = np.random.rand(32, 1).astype("float32")


            def scored_loss(y_true, y_pred):
                penalty = np.abs(np.fft.rfft(y_pred.numpy(), axis=0)).mean()  # expect: GT204
                return tf.reduce_mean(tf.square(y_true - y_pred)) + penalty


            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
            model.compile(optimizer="adam", loss=scored_loss)
            model.fit(x, y, epochs=1, verbose=0)
            """,
            truth=Truth(raises=("AttributeError", "numpy"), framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for node, traced in facts.traced_numpy.items():
            yield ctx.report(node, f"`.numpy()` runs in a traced graph ({traced}): there it raises AttributeError.")
        for lc in facts.lost_cuts.values():
            if lc.cut.kind not in ("numpy", "python") or lc.cut.node in facts.traced_numpy:
                continue
            msg = lost_message(facts, lc.lost, lc.sink_kind, f"`{lc.cut.op}`")
            yield ctx.report(lc.cut.node, msg,
                             data={"lost": facts.names(lc.lost), "op": lc.cut.op})
