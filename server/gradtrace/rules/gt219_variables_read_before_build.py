"""GT219: a model's variable list read before the model was first called or built: an empty list."""

from __future__ import annotations

import ast

from gradtrace.rules.base import Invalid, Rule, Truth


class VariablesReadBeforeBuild(Rule):
    code = "GT219"
    name = "variables-read-before-build"
    summary = "model.trainable_variables is read before the model is first called or built: it is an empty list."
    severity = "error"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `variables = model.trainable_variables` (or `trainable_weights`, `variables`, `weights`) read right
    after the model is made (or, for a model made at module level, at the start of the function that trains
    it), before anything called it, built it or was handed it, when the list then
    reaches a `tape.gradient` or an `apply_gradients`. It applies to models whose weights are all made on
    the first call: a subclassed model whose `__init__` only sets layers, a `Sequential` without an input
    shape, a bare Keras layer.

    ## Why is this bad?
    Keras makes a layer's weights when it is first called (or `build` is called): until then the list is
    empty, and reading it takes a copy. `tape.gradient(loss, [])` returns `[]`, so nothing trains, and
    `optimizer.apply_gradients(zip(grads, variables))` raises `ValueError` (an empty list of pairs).

    ## Example
    ```python
    model = MyModel()
    variables = model.trainable_variables
    for x, y in data:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    ```

    ## Use instead
    ```python
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
    ```
    or call `model.build(input_shape)` (or the model itself) before reading the list.

    ## Fix safety
    No automatic fix.
    """
    valid = (
        """
        import tensorflow as tf


        class MyModel(tf.keras.Model):
            def __init__(self):
                super().__init__()
                self.dense = tf.keras.layers.Dense(1)

            def call(self, x):
                return self.dense(x)


        model = MyModel()
        model.build((None, 3))
        variables = model.trainable_variables
        opt = tf.keras.optimizers.SGD(0.1)
        x = tf.ones([4, 3])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x) ** 2)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        """,
        """
        import tensorflow as tf

        model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])
        variables = model.trainable_variables
        opt = tf.keras.optimizers.SGD(0.1)
        x = tf.ones([4, 3])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x) ** 2)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        """,
        """
        import tensorflow as tf

        model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
        opt = tf.keras.optimizers.SGD(0.1)
        x = tf.ones([4, 3])
        for _ in range(2):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x) ** 2)
            variables = model.trainable_variables
            opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        """,
        """
        import tensorflow as tf


        class Regressor(tf.keras.Model):
            def __init__(self):
                super().__init__()
                self.hidden = tf.keras.layers.Dense(8, activation="relu")
                self.out = tf.keras.layers.Dense(1)

            def call(self, x):
                return self.out(self.hidden(x))


        model = Regressor()
        model(tf.zeros([1, 3]))
        optimizer = tf.keras.optimizers.Adam(1e-3)


        def train(steps=2):
            train_vars = model.trainable_variables
            x = tf.ones([4, 3])
            for _ in range(steps):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(model(x) ** 2)
                grads = tape.gradient(loss, train_vars)
                optimizer.apply_gradients(zip(grads, train_vars))


        def main():
            train()
            print(len(model.trainable_variables))


        main()
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf


            class MyModel(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.hidden = tf.keras.layers.Dense(8, activation="relu")
                    self.out = tf.keras.layers.Dense(1)

                def call(self, x):
                    return self.out(self.hidden(x))


            model = MyModel()
            optimizer = tf.keras.optimizers.Adam(1e-3)
            variables = model.trainable_variables  # expect: GT219
            x = tf.ones([4, 3])
            for step in range(2):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(model(x) ** 2)
                grads = tape.gradient(loss, variables)
                optimizer.apply_gradients(zip(grads, variables))
            """,
            truth=Truth(raises=("ValueError", "not enough values"), framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf


            def train(x, y, epochs=2):
                model = tf.keras.Sequential([tf.keras.layers.Dense(8, activation="relu"), tf.keras.layers.Dense(1)])
                model.compile(optimizer="adam", loss="mse")
                params = model.trainable_weights  # expect: GT219
                for _ in range(epochs):
                    with tf.GradientTape() as tape:
                        loss = tf.reduce_mean(tf.square(model(x) - y))
                    grads = tape.gradient(loss, params)
                    model.optimizer.apply_gradients(zip(grads, params))
                return model


            train(tf.ones([4, 3]), tf.zeros([4, 1]))
            """,
            truth=Truth(raises=("ValueError", "not enough values"), framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf


            class Regressor(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.hidden = tf.keras.layers.Dense(8, activation="relu")
                    self.out = tf.keras.layers.Dense(1)

                def call(self, x):
                    return self.out(self.hidden(x))


            model = Regressor()
            optimizer = tf.keras.optimizers.Adam(1e-3)


            def train(steps=2):
                train_vars = model.trainable_variables  # expect: GT219
                x = tf.ones([4, 3])
                for _ in range(steps):
                    with tf.GradientTape() as tape:
                        loss = tf.reduce_mean(model(x) ** 2)
                    grads = tape.gradient(loss, train_vars)
                    optimizer.apply_gradients(zip(grads, train_vars))


            def main():
                train()
                print(len(model.trainable_variables))


            main()
            """,
            truth=Truth(raises=("ValueError", "not enough values"), framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for read, sink in facts.unbuilt_reads.items():
            model = ast.unparse(read.value)
            yield ctx.report(
                read,
                f"`{ast.unparse(read)}` is empty here: `{model}` is not called or built yet, so the step on line "
                f"{sink.lineno} trains nothing.",
                data={"lost": [model]},
            )
