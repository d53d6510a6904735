"""GT218: a `tf.Variable` set on a Keras layer or model, which Keras 3 leaves out of its variable lists."""

from __future__ import annotations

from gradtrace.analysis.core.values import covered
from gradtrace.rules.base import Invalid, Rule, Truth
from gradtrace.rules.gt210_unused_trainable_variable import attribute_loads


class KerasUntrackedVariable(Rule):
    code = "GT218"
    name = "keras-untracked-variable"
    summary = "A tf.Variable set on a Keras layer is not one of its trainable_variables (Keras 3): it never trains."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `self.scale = tf.Variable(...)` in a Keras layer or model (also one appended to a list attribute,
    in `__init__`, `build` or a helper method they call) when the loss uses the variable but the
    gradient is taken with respect to the model's `trainable_variables` (or `trainable_weights`) and not to
    the variable itself.

    ## Why is this bad?
    Keras 3 (TensorFlow 2.16 and later) tracks only the variables a layer makes with `self.add_weight(...)`
    and those of its sublayers: a plain `tf.Variable` attribute is not in `trainable_variables`. Its
    gradient is never computed and the optimizer never changes it, with no error and no warning. A
    `tf.Module` does track its `tf.Variable`s; Keras 2 (`tf_keras`) did too, which is why code written for
    it stops training this variable after an upgrade.

    ## Example
    ```python
    class Scaled(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.scale = tf.Variable(1.0)
            self.dense = tf.keras.layers.Dense(1)
    ```

    ## Use instead
    ```python
            self.scale = self.add_weight(shape=(), initializer="ones", name="scale")
    ```

    ## Fix safety
    No automatic fix: the initializer and shape of `add_weight` depend on the variable's initial value.
    """
    valid = (
        """
        import tensorflow as tf


        class Scaled(tf.keras.Model):
            def __init__(self):
                super().__init__()
                self.scale = self.add_weight(shape=(), initializer="ones", name="scale")
                self.dense = tf.keras.layers.Dense(1)

            def call(self, x):
                return self.dense(x) * self.scale


        model = Scaled()
        x = tf.ones([4, 3])
        model(x)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        tf.keras.optimizers.SGD(0.1).apply_gradients(zip(grads, model.trainable_variables))
        """,
        """
        import tensorflow as tf


        class Scaled(tf.Module):
            def __init__(self):
                super().__init__()
                self.scale = tf.Variable(1.0)
                self.w = tf.Variable(tf.ones([3, 1]))

            def __call__(self, x):
                return x @ self.w * self.scale


        model = Scaled()
        x = tf.ones([4, 3])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        """,
        """
        import tensorflow as tf


        class Scaled(tf.keras.Model):
            def __init__(self):
                super().__init__()
                self.scale = tf.Variable(1.0)
                self.dense = tf.keras.layers.Dense(1)

            def call(self, x):
                return self.dense(x) * self.scale


        model = Scaled()
        x = tf.ones([4, 3])
        model(x)
        variables = model.trainable_variables + [model.scale]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x) ** 2)
        grads = tape.gradient(loss, variables)
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf


            class Scaled(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.scale = tf.Variable(1.0)  # expect: GT218
                    self.dense = tf.keras.layers.Dense(1)

                def call(self, x):
                    return self.dense(x) * self.scale


            model = Scaled()
            opt = tf.keras.optimizers.SGD(0.1)
            x = tf.ones([4, 3])
            for _ in range(3):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean((model(x) - 1.0) ** 2)
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
            """,
            truth=Truth(grads={"model.scale - 1.0": "zero"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf


            class Temperature(tf.keras.layers.Layer):
                def __init__(self):
                    super().__init__()
                    self.t = tf.Variable(2.0, name="temperature")  # expect: GT218

                def call(self, logits):
                    return logits / self.t


            class Classifier(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.dense = tf.keras.layers.Dense(3)
                    self.temperature = Temperature()

                def call(self, x):
                    return self.temperature(self.dense(x))


            def train(model, x, y, steps=3):
                opt = tf.keras.optimizers.Adam(0.1)
                for _ in range(steps):
                    with tf.GradientTape() as tape:
                        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
                            y, model(x), from_logits=True))
                    grads = tape.gradient(loss, model.trainable_weights)
                    opt.apply_gradients(zip(grads, model.trainable_weights))


            classifier = Classifier()
            train(classifier, tf.ones([4, 2]), tf.constant([0, 1, 2, 0]))
            """,
            truth=Truth(grads={"classifier.temperature.t - 2.0": "zero"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import numpy as np
            import tensorflow as tf


            class Gate(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.gate = tf.Variable(0.5)  # expect: GT218
                    self.dense = tf.keras.layers.Dense(1)

                def call(self, x):
                    return self.gate * self.dense(x)


            model = Gate()
            model.compile(optimizer="sgd", loss="mse")
            model.fit(np.ones([8, 3]), np.zeros([8, 1]), epochs=2, verbose=0)
            """,
            truth=Truth(grads={"model.gate - 0.5": "zero"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf


            class Experts(tf.keras.layers.Layer):
                def build(self, input_shape):
                    self.kernels = []
                    for _ in range(2):
                        self.kernels.append(tf.Variable(tf.ones([input_shape[-1], 1])))  # expect: GT218

                def call(self, x):
                    return tf.add_n([x @ k for k in self.kernels])


            layer = Experts()
            x = tf.ones([4, 3])
            layer(x)
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(x))
            grads = tape.gradient(loss, layer.trainable_variables)
            """,
            truth=Truth(grads={"len(layer.trainable_variables)": "zero"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf


            class Gated(tf.keras.layers.Layer):
                def __init__(self):
                    super().__init__()
                    self.make_weights()

                def make_weights(self):
                    self.gate = tf.Variable(0.5)  # expect: GT218

                def call(self, x):
                    return x * self.gate


            class Net(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.gated = Gated()
                    self.head = tf.keras.layers.Dense(1)

                def call(self, x):
                    return self.head(self.gated(x))


            model = Net()
            opt = tf.keras.optimizers.SGD(0.1)
            x = tf.ones([4, 3])
            for _ in range(3):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean((model(x) - 1.0) ** 2)
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
            """,
            truth=Truth(grads={"model.gated.gate - 0.5": "zero"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        reported: set = set()
        loads = attribute_loads(ctx.source)
        for origin, fit in facts.plugin.untracked_fits.items():
            info = facts.plugin.variables[origin]
            attr = info.keras_held.partition(".")[2]
            if info.local and info.carries_gradient and attr in loads:
                reported.add(origin)
                yield self.untracked(ctx, info, fit)
        for call in facts.grad_calls.values():
            pairs = call.source_pairs
            if not any(value.kind == "varlist" for _, value in pairs):
                continue
            asked = frozenset().union(*(value.srcs for _, value in pairs))
            for origin in sorted(call.target.srcs):
                info = facts.plugin.variables.get(origin)
                if info is None or info.keras_held is None or not info.local or origin in reported:
                    continue
                if not info.carries_gradient or covered(origin, asked):
                    continue
                reported.add(origin)
                yield self.untracked(ctx, info, call.node)

    @staticmethod
    def untracked(ctx, info, step):
        cls, _, attr = info.keras_held.partition(".")
        return ctx.report(
            info.node,
            f"`self.{attr}` is a `tf.Variable`, which Keras 3 leaves out of `{cls}.trainable_variables`: it never "
            "trains.",
            data={"lost": [info.keras_held]},
            related=[ctx.related(step, "the training step")],
        )
