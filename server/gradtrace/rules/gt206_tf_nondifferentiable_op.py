"""GT206: argmax, integer casts or rounding on the only path from trainable variables to the loss."""

from __future__ import annotations

from gradtrace.analysis.frameworks.tensorflow.plugin import connected_zero
from gradtrace.rules._messages import join_phrases
from gradtrace.rules.base import Invalid, Rule, Truth
from gradtrace.rules.gt203_tf_stop_gradient_only_path import lost_message


def py_function_message(facts, lost) -> str:
    """TensorFlow's gradient of a `py_function` whose function ran NumPy is a zero scalar: what it reaches gets
    zeros after an op that broadcasts it (softmax), and backward fails after one that does not (a bias add)."""
    shown = facts.names(lost)
    names = join_phrases([n if n.startswith("the ") else f"`{n}`" for n in shown])
    verb = "trains" if len(shown) == 1 else "train"
    return (f"{names[0].upper()}{names[1:]} never {verb}: `tf.py_function` runs NumPy, so its gradient is zero "
            f"(or backward fails).")


class TFNondifferentiableOp(Rule):
    code = "GT206"
    name = "tf-nondifferentiable-op"
    summary = "argmax, an integer cast, rounding or floor division cuts trainable variables from the loss."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `tf.argmax`/`argmin`/`argsort`, comparisons (`model(x) > 0.5`), `tf.cast(..., tf.int*)`/`bool`,
    `tf.round`/`floor`/`ceil`/`sign`, a difference of a value with itself (`h - h`, a straight-through
    estimator missing its `stop_gradient`), and floor division of float tensors (`h // step`, `tf.math.floordiv`) when they are on the
    only path from trainable variables to the loss. Indexing with an argmax
    (`tf.gather(logits, tf.argmax(...))`) keeps the gradient of the gathered values and stays quiet, and
    so does `%` (`FloorMod` has a gradient). A loss function given to `model.compile(loss=...)` (directly or
    made by a factory) is run on the model's output where `fit` trains it. `tf.py_function` is
    differentiable while its function computes with TensorFlow; one that leaves for NumPy (`t.numpy()`) is
    flagged too (a layer of your own inside a `Sequential` included).

    ## Why is this bad?
    Integer results have no gradient, and TensorFlow registers no gradient for `round`/`floor`/`ceil`
    and `FloorDiv` (`sign` and a NumPy `py_function` have a zero one): `tape.gradient` returns `None` for the variables before the op, and they
    never train.

    ## Example
    ```python
    pred = tf.cast(tf.argmax(logits, axis=1), tf.float32)
    loss = tf.reduce_mean((pred - labels) ** 2)
    ```

    ## Use instead
    ```python
    loss = tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    ```
    Or a straight-through estimator: `x + tf.stop_gradient(tf.round(x) - x)`.

    ## Fix safety
    No automatic fix: a differentiable surrogate changes the objective.
    """
    valid = (
        """
        import tensorflow as tf

        w = tf.Variable([[0.2, 0.8], [0.5, -0.1]])
        x = tf.constant([[1.0, 1.0]])
        with tf.GradientTape() as tape:
            logits = tf.matmul(x, w)
            best = tf.gather(logits, tf.argmax(logits, axis=1), axis=1, batch_dims=1)
            loss = tf.reduce_sum(best ** 2)
        g = tape.gradient(loss, w)
        """,
        """
        import tensorflow as tf

        w = tf.Variable([0.3, 1.7])
        steps = tf.constant([7, 9])
        with tf.GradientTape() as tape:
            phase = (w * 4.0) % 1.0
            bucket = tf.cast(steps // 2, tf.float32)
            loss = tf.reduce_sum(phase * bucket)
        g = tape.gradient(loss, w)
        """,
    )
    invalid = (
        Invalid(
            """
            import keras
            from keras import ops
            import tensorflow as tf

            inputs = keras.Input((6,))
            scores = keras.layers.Dense(4, activation="softmax")(inputs)
            picked = keras.layers.Lambda(ops.argmax, arguments={"axis": -1})(scores)  # expect: GT206
            picked = keras.layers.Lambda(ops.cast, arguments={"dtype": "float32"})(picked)
            outputs = keras.layers.Dense(1)(keras.layers.Reshape((1,))(picked))
            model = keras.Model(inputs, outputs)
            x = tf.ones([3, 6])
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x))
            grads = tape.gradient(loss, model.trainable_variables)
            g = grads[0]
            """,
            truth=Truth(grads={"g": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1, activation="sigmoid")])
            x, y = tf.ones([4, 3]), tf.ones([4, 1])
            with tf.GradientTape() as tape:
                hard = tf.cast(model(x) > 0.5, tf.float32)  # expect: GT206
                loss = tf.reduce_mean(tf.square(y - hard))
            grads = tape.gradient(loss, model.trainable_variables)
            """,
            truth=Truth(grads={"grads[0]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import numpy as np
            import tensorflow as tf


            def rank_loss(y_true, y_pred):
                return tf.reduce_sum(tf.abs(tf.cast(tf.argsort(y_pred), tf.float32) - y_true))  # expect: GT206


            model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])
            model.compile(optimizer="adam", loss=rank_loss)
            model.fit(np.ones([8, 4]), np.zeros([8, 3]), epochs=1, verbose=0)
            """,
            truth=Truth(raises=("ValueError", "No gradients provided"), framework="tensorflow"),
        ),
        Invalid(
            """
            import numpy as np
            import tensorflow as tf


            def make_rank_loss(scale):
                def rank_loss(y_true, y_pred):
                    orders = tf.argsort(tf.argsort(y_pred))  # expect: GT206
                    return scale * tf.reduce_sum(tf.abs(tf.cast(orders, tf.float32) - y_true))

                return rank_loss


            def build_model():
                inputs = tf.keras.Input((4,))
                model = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(inputs))
                model.compile(optimizer="adam", loss=make_rank_loss(0.5))
                return model


            model = build_model()
            model.fit(np.ones([8, 4]), np.zeros([8, 3]), epochs=1, verbose=0)
            """,
            truth=Truth(raises=("ValueError", "No gradients provided"), framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            w = tf.Variable([[0.2, 0.8], [0.5, -0.1]])
            x = tf.constant([[1.0, 1.0]])
            with tf.GradientTape() as tape:
                logits = tf.matmul(x, w)
                pred = tf.cast(tf.argmax(logits, axis=1), tf.float32)  # expect: GT206
                loss = tf.reduce_sum((pred - 1.0) ** 2)
            g = tape.gradient(loss, w)
            """,
            truth=Truth(grads={"g": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            w = tf.Variable([0.3, 1.7])
            with tf.GradientTape() as tape:
                q = tf.round(w * 4.0) / 4.0  # expect: GT206
                loss = tf.reduce_sum((q - 1.0) ** 2)
            g = tape.gradient(loss, w)
            """,
            truth=Truth(grads={"g": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            w = tf.Variable([[0.2, 0.8], [0.5, -0.1]])
            step = 0.25

            def encode(x):
                h = tf.sigmoid(tf.matmul(x, w))
                return (h // step) * step  # expect: GT206

            with tf.GradientTape() as tape:
                loss = tf.reduce_sum((encode(tf.ones([1, 2])) - 0.5) ** 2)
            g = tape.gradient(loss, w)
            """,
            truth=Truth(grads={"g": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import numpy as np
            import tensorflow as tf


            class SinhFilter(tf.keras.layers.Layer):
                def call(self, x):
                    def host_sinh(t):
                        return np.sinh(t.numpy()).astype(np.float32)

                    out = tf.py_function(host_sinh, [x], tf.float32)  # expect: GT206
                    return tf.reshape(out, (-1, 3))


            model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3), tf.keras.layers.Softmax(),
                                         SinhFilter(), tf.keras.layers.Dense(1)])
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(model(tf.ones([2, 4])))
            g = tape.gradient(loss, model.layers[0].kernel)
            """,
            truth=Truth(grads={"g": "zero"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import numpy as np
            import tensorflow as tf


            def host_sinh(t):
                return np.sinh(t.numpy()).astype(np.float32)


            dense = tf.keras.layers.Dense(3)
            x = tf.ones([2, 4])
            with tf.GradientTape() as tape:
                h = tf.py_function(host_sinh, [dense(x)], tf.float32)  # expect: GT206
                loss = tf.reduce_sum(h)
            g = tape.gradient(loss, dense.trainable_variables)
            """,
            truth=Truth(raises=("InvalidArgumentError", "at least 2D"), framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            dense = tf.keras.layers.Dense(2)
            x = tf.ones([3, 4])
            with tf.GradientTape() as tape:
                h = dense(x)
                code = h - h + tf.one_hot(tf.argmax(h, axis=1), 2)  # expect: GT206
                loss = tf.reduce_sum(code * tf.constant([1.0, 2.0]))
            g = tape.gradient(loss, dense.kernel)
            """,
            truth=Truth(grads={"g": "zero"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for lc in facts.lost_cuts.values():
            if lc.cut.kind not in ("int_cast", "zero_grad"):
                continue
            if lc.cut.op == "tf.py_function":
                msg = py_function_message(facts, lc.lost)
            else:
                msg = lost_message(facts, lc.lost, lc.sink_kind, f"`{lc.cut.op}`", zero=connected_zero(lc.cut.op))
            yield ctx.report(lc.cut.node, msg,
                             data={"lost": facts.names(lc.lost), "op": lc.cut.op})
