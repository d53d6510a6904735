"""GT201: a `tf.Variable` created inside the tape, the training loop or a layer's `call`."""

from __future__ import annotations

import ast

from gradtrace.rules.base import Invalid, Rule, Truth


class TFVariablePerStep(Rule):
    code = "GT201"
    name = "tf-variable-per-step"
    summary = "A trainable tf.Variable is created anew on every step, so the optimizer never trains it."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `tf.Variable(...)` (and `add_weight`) calls that run on every training step: inside a
    `GradientTape` block, inside the loop that runs the tape, in a function that opens the tape, or in
    a Keras layer's `call()` / a `tf.Module`'s `__call__`. So is a Keras layer with weights built there
    (`Dense(units)(inputs)` in `call()`): each call builds new weights. So is a variable created in the loss
    function given to `model.compile(loss=...)`: Keras calls it on every step.

    ## Why is this bad?
    Every step creates a fresh variable from the initial value: what was learned is thrown away.
    The loss never improves. TensorFlow 2 *does* record a variable created and read
    inside a tape, so `tape.gradient` returns a gradient for it, but a Keras 3 optimizer, built for the
    first variable, raises `ValueError: Unknown variable` when handed the new one. In a layer's
    `call()` the new variable is not even tracked by the layer's weights. Under `@tf.function` the step
    does not run at all: tracing it raises `ValueError` ("tf.function only supports singleton
    tf.Variables created on the first call"). Create it once: before the loop, or in `__init__`/`build`.

    ## Example
    ```python
    for step in range(100):
        with tf.GradientTape() as tape:
            w = tf.Variable(1.0)
            loss = (w * x - y) ** 2
        opt.apply_gradients(zip(tape.gradient(loss, [w]), [w]))
    ```

    ## Use instead
    ```python
    w = tf.Variable(1.0)
    for step in range(100):
        with tf.GradientTape() as tape:
            loss = (w * x - y) ** 2
        opt.apply_gradients(zip(tape.gradient(loss, [w]), [w]))
    ```
    In a layer, create weights in `build()` (or `__init__`) with `self.add_weight`.

    ## Fix safety
    No automatic fix: moving the creation changes where the variable lives.
    """
    valid = (
        """
        import tensorflow as tf

        w = tf.Variable(1.0)
        opt = tf.keras.optimizers.SGD(0.1)
        for step in range(3):
            with tf.GradientTape() as tape:
                loss = (w * 2.0 - 1.0) ** 2
            opt.apply_gradients(zip(tape.gradient(loss, [w]), [w]))
        """,
        """
        import tensorflow as tf

        class Scale(tf.keras.layers.Layer):
            def build(self, input_shape):
                self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

            def call(self, x):
                return x * self.w
        """,
        """
        import tensorflow as tf

        class Lazy(tf.Module):
            def __init__(self):
                super().__init__()
                self.w = None

            def __call__(self, x):
                if self.w is None:
                    self.w = tf.Variable(tf.ones([x.shape[-1]]))
                return x * self.w
        """,
        """
        import tensorflow as tf

        results = {}
        for dtype in (tf.float32, tf.float64):
            var = tf.Variable([1.0, 2.0], dtype=dtype)
            opt = tf.keras.optimizers.SGD(0.5)
            for _ in range(3):
                opt.apply_gradients([(tf.constant([0.1, 0.1], dtype=dtype), var)])
            results[dtype.name] = var.numpy()
        """,
        """
        import tensorflow as tf

        def check_momentum(values):
            for value in values:
                var = tf.Variable(value)
                tf.keras.optimizers.SGD(0.1, momentum=0.9).apply_gradients([(tf.ones_like(var), var)])
                assert float(var.numpy()[0]) < value[0]

        check_momentum([[1.0], [2.0]])
        """,
    )
    invalid = (
        Invalid(
            """
            import keras
            import tensorflow as tf


            class Gated(keras.Model):
                def __init__(self):
                    super().__init__()
                    self.gate = keras.layers.Dense(4, activation="sigmoid")

                def call(self, x):
                    h = keras.layers.Dense(4)(x)  # expect: GT201
                    return h * self.gate(x)


            model = Gated()
            opt = keras.optimizers.SGD(0.1)


            @tf.function
            def train_step(x):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(model(x) ** 2)
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
                return loss


            for step in range(2):
                train_step(tf.ones([3, 6]))
            """,
            truth=Truth(raises=("ValueError", "singleton tf.Variables"), framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            x = tf.constant([1.0, 2.0])
            opt = tf.keras.optimizers.SGD(0.1)
            losses = []
            for step in range(3):
                with tf.GradientTape() as tape:
                    w = tf.Variable(1.0)  # expect: GT201
                    loss = tf.reduce_sum((w * x - 3.0) ** 2)
                grads = tape.gradient(loss, [w])
                opt.apply_gradients(zip(grads, [w]))
                losses.append(float(loss))
            """,
            truth=Truth(raises=("ValueError", "Unknown variable"), framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            losses = []
            for step in range(3):
                with tf.GradientTape() as tape:
                    w = tf.Variable(1.0)  # expect: GT201
                    loss = (w * 2.0 - 3.0) ** 2
                w.assign_sub(0.1 * tape.gradient(loss, w))
                losses.append(float(loss))
            """,
            truth=Truth(grads={"losses[-1] - losses[0]": "zero"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            x = tf.constant(2.0)
            with tf.GradientTape() as tape:
                if x > 0:
                    w = tf.Variable(3.0)  # expect: GT201
                y = w * x
            dy_dw = tape.gradient(y, w)
            """,
            # TF does differentiate a variable created inside the tape: dy/dw == x == 2
            truth=Truth(grads={"dy_dw - 2.0": "zero"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            class Gate(tf.keras.layers.Layer):
                def call(self, x):
                    g = tf.Variable(tf.ones([x.shape[-1]]))  # expect: GT201
                    return x * g

            layer = Gate()
            out = layer(tf.ones([2, 3]))
            n_weights = len(layer.trainable_weights)
            """,
            truth=Truth(grads={"n_weights": "zero"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf


            class Gate(tf.keras.layers.Layer):
                def call(self, x):
                    self.gate = tf.Variable(tf.ones([x.shape[-1]]))  # expect: GT201
                    return x * tf.sigmoid(self.gate)


            class Net(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.gate = Gate()
                    self.out = tf.keras.layers.Dense(1)

                def call(self, x):
                    return self.out(self.gate(x))


            model = Net()
            opt = tf.keras.optimizers.Adam(1e-2)


            @tf.function
            def train_step(x, y):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.square(model(x) - y))
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
                return loss


            train_step(tf.ones([4, 3]), tf.zeros([4, 1]))
            """,
            truth=Truth(raises=("ValueError", "only supports singleton tf.Variables"), framework="tensorflow"),
        ),
        Invalid(
            """
            import keras
            import numpy as np
            import tensorflow as tf

            x = np.random.rand(32, 5).astype("float32")
            y = np.random.rand(32, 1).astype("float32")


            def balanced_loss(y_true, y_pred):
                w = tf.Variable(0.5, trainable=True)  # expect: GT201
                mse = tf.reduce_mean(tf.square(y_true - y_pred))
                mae = tf.reduce_mean(tf.abs(y_true - y_pred))
                return w * mse + (1.0 - w) * mae


            model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
            model.compile(optimizer="sgd", loss=balanced_loss)
            model.fit(x, y, epochs=1, verbose=0)
            """,
            truth=Truth(raises=("ValueError", "singleton tf.Variables"), framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for info in facts.variables.values():
            if not info.per_step or not info.trainable:
                continue
            name = info.name or "this variable"
            if info.compiled and "the loss Keras calls" in info.per_step:
                message = f"`{name}` is created anew {info.per_step}: tracing that step raises ValueError."
            elif info.compiled:
                where = info.per_step.split(",")[0]
                message = f"`{name}` is created anew {where} under `@tf.function`: tracing the step raises ValueError."
            elif info.per_step == "inside the GradientTape":
                message = f"`{name}` is created inside the GradientTape: every run restarts it from its initial value."
            else:
                where = info.per_step.split(",")[0]
                message = f"`{name}` is created anew {where}: every step restarts it from its initial value."
            yield ctx.report(info.node, message, data={"lost": [name]})
        for node, (why, compiled) in facts.layers_per_step.items():
            layer = f"{ast.unparse(node.func).rsplit('.', 1)[-1]}(...)"
            where = why.split(",")[0]
            if compiled:
                message = f"`{layer}` builds new weights {where} under `@tf.function`: tracing the step raises ValueError."
            else:
                message = f"`{layer}` builds new weights {where}: they start over at every call and never train."
            yield ctx.report(node, message, data={"lost": [layer]})
