"""GT208: a trainable=False variable used as a gradient source or handed to the optimizer."""

from __future__ import annotations

from gradtrace.rules.base import Invalid, Rule, Truth


class NonTrainableVariableOptimized(Rule):
    code = "GT208"
    name = "non-trainable-variable-optimized"
    summary = "A tf.Variable(trainable=False) is differentiated or optimized: the tape never watches it."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `tf.Variable(..., trainable=False)` (or `add_weight(trainable=False)`) when the variable is
    listed as a source of `tape.gradient` or handed to `optimizer.apply_gradients`/`minimize`, also
    inside a list built by concatenation (`model.trainable_variables + [v]`), unpacking (`[*vs, v]`)
    or `append`/`extend`. Non-trainable state updated with `assign` (running statistics, counters)
    and variables the tape watches explicitly (`tape.watch(v)`) stay quiet.

    Also flags `model.trainable = False` when the same Keras model is then trained by its own `fit` or
    `train_on_batch` with no `trainable = True` in between (the GAN slip of freezing the discriminator
    before compiling it); freezing it inside a combined model that trains something else stays quiet.

    ## Why is this bad?
    Tapes watch only trainable variables automatically. The gradient of a non-trainable variable is
    `None`, and the optimizer skips it with the warning "Gradients do not exist for variables".

    ## Example
    ```python
    b = tf.Variable(0.0, trainable=False)
    grads = tape.gradient(loss, [w, b])      # grads[1] is None
    ```

    ## Use instead
    ```python
    b = tf.Variable(0.0)
    ```
    Or, if it must stay frozen, leave it out of the gradient and optimizer lists.

    ## Fix safety
    No automatic fix: whether the variable should train is the author's decision.
    """
    valid = (
        """
        import numpy as np
        import tensorflow as tf

        critic = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])
        maker = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(3)])
        z = tf.keras.Input((2,))
        critic.trainable = False
        stacked = tf.keras.Model(z, critic(maker(z)))
        stacked.compile(optimizer="sgd", loss="mse")
        critic.compile(optimizer="sgd", loss="mse")
        for step in range(2):
            critic.trainable = True
            critic.train_on_batch(np.ones((4, 3)), np.ones((4, 1)))
            critic.trainable = False
            stacked.train_on_batch(np.ones((4, 2)), np.ones((4, 1)))
        """,
        """
        import tensorflow as tf

        w = tf.Variable(1.0)
        running = tf.Variable(0.0, trainable=False)
        with tf.GradientTape() as tape:
            loss = (w * 3.0 - 1.0) ** 2
        grads = tape.gradient(loss, [w])
        running.assign(0.9 * running + 0.1 * loss)
        """,
        """
        import tensorflow as tf

        model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])
        log_scale = tf.Variable(0.0, trainable=False)
        params = model.trainable_variables + [log_scale]
        x = tf.ones([8, 3])
        with tf.GradientTape() as tape:
            tape.watch(log_scale)
            loss = tf.reduce_mean((model(x) * tf.exp(log_scale) - 1.0) ** 2)
        grads = tape.gradient(loss, params)
        """,
    )
    invalid = (
        Invalid(
            """
            import numpy as np
            import tensorflow as tf

            critic = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])
            critic.trainable = False  # expect: GT208
            critic.compile(optimizer="sgd", loss="mse")
            before = critic.get_weights()[0].copy()
            critic.fit(np.ones((8, 3)), np.ones((8, 1)), epochs=2, verbose=0)
            change = critic.get_weights()[0] - before
            """,
            truth=Truth(grads={"change": "zero"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            w = tf.Variable(1.0)
            b = tf.Variable(0.0, trainable=False)  # expect: GT208
            opt = tf.keras.optimizers.SGD(0.1)
            with tf.GradientTape() as tape:
                loss = (w * 3.0 + b - 1.0) ** 2
            grads = tape.gradient(loss, [w, b])
            opt.apply_gradients(zip(grads, [w, b]))
            """,
            truth=Truth(grads={"grads[1]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])
            log_scale = tf.Variable(0.0, trainable=False)  # expect: GT208
            opt = tf.keras.optimizers.Adam(0.01)
            params = model.trainable_variables + [log_scale]
            x = tf.ones([8, 3])
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((model(x) * tf.exp(log_scale) - 1.0) ** 2)
            grads = tape.gradient(loss, params)
            opt.apply_gradients(zip(grads, params))
            """,
            truth=Truth(grads={"grads[-1]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            w = tf.Variable([1.0, 2.0])
            shift = tf.Variable(0.5, trainable=False)  # expect: GT208
            sources = [w]
            sources.append(shift)
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum((w + shift) ** 2)
            grads = tape.gradient(loss, sources)
            """,
            truth=Truth(grads={"grads[1]": "none"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for info in facts.variables.values():
            if info.trainable or not info.listed or info.watched:
                continue
            name = info.name or "this variable"
            first = min(n.lineno for n in info.listed)
            yield ctx.report(
                info.node,
                f"`{name}` has trainable=False, yet line {first} differentiates or optimizes it: its gradient is None.",
                data={"lost": [name]},
            )
        for node, (_frozen, fit) in facts.frozen_fits.items():
            name = ctx.source.segment(node.targets[0].value)
            yield ctx.report(
                node,
                f"`{name}` is frozen here, then trained by `.{fit.func.attr}()` on line {fit.lineno}: its weights "
                f"never change.",
                data={"lost": [name]},
            )
