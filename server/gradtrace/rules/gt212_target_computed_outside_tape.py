"""GT212: the target of tape.gradient was computed before the tape started recording."""

from __future__ import annotations

import ast

from gradtrace.rules.base import Invalid, Rule, Truth
from gradtrace.rules.gt203_tf_stop_gradient_only_path import lost_message


class TargetComputedOutsideTape(Rule):
    code = "GT212"
    name = "target-computed-outside-tape"
    summary = "tape.gradient differentiates a loss computed (or whose forward pass ran) outside the tape: all None."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `tape.gradient(loss, ...)` when `loss` depends on trainable variables but was computed
    before the tape's `with` block and is not recomputed inside it, and the line that computes `loss`
    (a loss object, a model or a TensorFlow op) after the `with` block ended, before the gradient —
    or in the `tape.gradient(...)` call itself (`tape.gradient(-loss, ...)`, `tape.gradient(f(x), x)`)
    made after the block. For `optimizer.minimize(loss_fn, var_list)`, which runs `loss_fn` under a
    tape of its own, flags a tensor computed from the variables before the call that `loss_fn` returns
    or reads instead of computing it.
    Also flags the forward pass that runs before the `with` block (`y_pred = self(x, training=True)`)
    when the loss computed inside the block depends on the variables only through it — the usual
    slip in a Keras `train_step` — also when the caller runs it and passes its output as an argument
    (`train_step(model(x), y)`), and when the block computes the loss with a helper of the file that only
    computes from its arguments (`loss = total_loss(x, recon, mu, log_var)`). A teacher's output computed
    before the tape, next to a student called inside it, stays quiet.
    Also flags a tensor a layer computes from its variables once, in `__init__` or `build`
    (`self.kernel = tf.concat([self.w, -self.w], 1)`), when `call()` reaches the variables only through it,
    and what a `tf.data` dataset computes from variables in the function given to `map`, `reduce`, `filter`,
    `flat_map`, `scan` or `interleave` (the dataset runs it in a graph of its own).

    ## Why is this bad?
    A tape records only what runs while it is active: a loss computed outside it gives `None`
    gradients. Computed before the tape starts (or after its block ends), it has no recorded path to
    the variables. `apply_gradients` then raises "No gradients provided for any variable". Compute it inside
    the `with` block.

    ## Example
    ```python
    loss = tf.reduce_mean((model(x) - y) ** 2)
    with tf.GradientTape() as tape:
        pass
    grads = tape.gradient(loss, model.trainable_variables)
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((model(x) - y) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    ```

    ## Fix safety
    No automatic fix: the computation has to move into the block.
    """
    valid = (
        """
        import tensorflow as tf


        class Mirror(tf.keras.layers.Layer):
            def build(self, input_shape):
                self.w = self.add_weight(shape=(input_shape[-1], 1), initializer="ones")

            def call(self, x):
                return x @ tf.concat([self.w, -self.w], axis=1)


        layer = Mirror()
        x = tf.ones([4, 3])
        layer(x)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) ** 2)
        grads = tape.gradient(loss, layer.trainable_variables)
        """,
        """
        import tensorflow as tf

        w = tf.Variable([[0.5], [-0.5]])
        x = tf.ones([4, 2])
        target = tf.reduce_mean(x, axis=1, keepdims=True) * 2.0
        sgd = tf.compat.v1.train.GradientDescentOptimizer(0.1)
        sgd.minimize(lambda: tf.reduce_mean((x @ w - target) ** 2), var_list=[w])
        """,
        """
        import tensorflow as tf

        w = tf.Variable(1.0)
        loss = w * 2.0
        with tf.GradientTape() as tape:
            loss = w * 3.0
        g = tape.gradient(loss, w)
        """,
        """
        import tensorflow as tf

        model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
        loss_fn = tf.keras.losses.MeanSquaredError()
        x = tf.ones([4, 3])
        y = tf.zeros([4, 2])
        with tf.GradientTape() as tape:
            pred = model(x)
            loss = loss_fn(y, pred)
        report = loss_fn(y, pred)
        loss_value = loss
        grads = tape.gradient(loss_value, model.trainable_variables)
        """,
        """
        import tensorflow as tf

        teacher = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
        student = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
        x = tf.ones([4, 3])
        soft = tf.nn.softmax(teacher(x))
        with tf.GradientTape() as tape:
            logits = student(x)
            loss = tf.reduce_mean(tf.keras.losses.categorical_crossentropy(soft, logits, from_logits=True))
        grads = tape.gradient(loss, student.trainable_variables)
        """,
        """
        import tensorflow as tf

        w = tf.Variable([1.0, 2.0])
        with tf.GradientTape(persistent=True) as tape:
            losses = [tf.reduce_sum(w ** 2), tf.reduce_sum(w)]
            g_inside = tape.gradient(-losses[0], w)
        g_after = tape.gradient(losses[1], w)
        """,
        """
        import tensorflow as tf


        def total_loss(x, recon, mu, log_var):
            kl = -0.5 * tf.reduce_mean(1 + log_var - tf.square(mu) - tf.exp(log_var))
            return tf.reduce_mean(tf.square(x - recon)) + kl


        encoder = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(4)])
        decoder = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(4)])
        optimizer = tf.keras.optimizers.Adam(1e-3)
        variables = encoder.trainable_variables + decoder.trainable_variables
        x = tf.random.normal((8, 4))
        for step in range(2):
            with tf.GradientTape() as tape:
                h = encoder(x)
                mu, log_var = h[:, :2], h[:, 2:]
                recon = decoder(mu)
                loss = total_loss(x, recon, mu, log_var)
            grads = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(grads, variables))
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf

            model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])
            opt = tf.keras.optimizers.SGD(0.1)


            def train_step(logits, labels):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.square(logits - labels))
                return tape.gradient(loss, model.trainable_variables)


            x, y = tf.ones([8, 4]), tf.zeros([8, 3])
            logits = model(x)  # expect: GT212
            grads = train_step(logits, y)
            g = grads[0]
            """,
            truth=Truth(grads={"g": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            scale = tf.Variable(1.0)
            ds = tf.data.Dataset.from_tensor_slices(tf.ones([8, 3])).map(lambda x: x * scale)  # expect: GT212
            for batch in ds.batch(4):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_sum(batch ** 2)
                grads = tape.gradient(loss, [scale])
            """,
            truth=Truth(grads={"grads[0]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf


            class Mirror(tf.keras.layers.Layer):
                def build(self, input_shape):
                    self.w = self.add_weight(shape=(input_shape[-1], 1), initializer="ones")
                    self.kernel = tf.concat([self.w, -self.w], axis=1)  # expect: GT212

                def call(self, x):
                    return x @ self.kernel


            layer = Mirror()
            x = tf.ones([4, 3])
            layer(x)
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(x) ** 2)
            grads = tape.gradient(loss, layer.trainable_variables)
            """,
            truth=Truth(grads={"grads[0]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            w = tf.Variable([[0.5], [-0.5]])
            x = tf.ones([4, 2])
            loss = tf.reduce_mean((x @ w - 1.0) ** 2)  # expect: GT212
            sgd = tf.compat.v1.train.GradientDescentOptimizer(0.1)
            sgd.minimize(lambda: loss, var_list=[w])
            """,
            truth=Truth(raises=("ValueError", "No gradients provided"), framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            w = tf.Variable(1.0)
            x = tf.constant([1.0, 2.0])
            loss = tf.reduce_sum((w * x - 1.0) ** 2)
            with tf.GradientTape() as tape:
                tape.watch(w)
            g = tape.gradient(loss, w)  # expect: GT212
            """,
            truth=Truth(grads={"g": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
            loss_fn = tf.keras.losses.MeanSquaredError()
            x = tf.ones([4, 3])
            y = tf.zeros([4, 2])
            with tf.GradientTape() as tape:
                pred = model(x)
            loss = loss_fn(y, pred)  # expect: GT212
            grads = tape.gradient(loss, model.trainable_variables)
            """,
            truth=Truth(grads={"grads[0]": "none", "grads[1]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            class Regressor(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.dense = tf.keras.layers.Dense(1)

                def call(self, x):
                    return self.dense(x)

                def train_step(self, data):
                    x, y = data
                    y_pred = self(x, training=True)  # expect: GT212
                    with tf.GradientTape() as tape:
                        loss = tf.reduce_mean(tf.square(y - y_pred))
                    grads = tape.gradient(loss, self.trainable_variables)
                    self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
                    return {"loss": loss}

            model = Regressor()
            model.compile(optimizer="sgd")
            model.fit(tf.ones([8, 3]), tf.zeros([8, 1]), epochs=1, verbose=0)
            """,
            truth=Truth(raises=("ValueError", "No gradients provided"), framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            class Scorer(tf.Module):
                def __init__(self, width):
                    self.w = tf.Variable(tf.ones([width, 1]))

                def __call__(self, x):
                    return tf.nn.softplus(x @ self.w)

            scorer = Scorer(3)
            with tf.GradientTape() as tape:
                score = scorer(tf.ones([4, 3]))
            grads = tape.gradient(tf.reduce_mean(-score), [scorer.w])  # expect: GT212
            """,
            truth=Truth(grads={"grads[0]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            inputs = tf.keras.Input((3,))
            model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(inputs))
            mse = tf.keras.losses.MeanSquaredError()

            def fit_batch(predictions, targets):
                with tf.GradientTape() as tape:
                    loss = mse(targets, predictions)
                return tape.gradient(loss, model.trainable_variables)

            grads = fit_batch(model(tf.ones([4, 3])), tf.zeros([4, 1]))  # expect: GT212
            """,
            truth=Truth(grads={"grads[0]": "none", "grads[1]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf


            def total_loss(x, recon, mu, log_var):
                kl = -0.5 * tf.reduce_mean(1 + log_var - tf.square(mu) - tf.exp(log_var))
                return tf.reduce_mean(tf.square(x - recon)) + kl


            encoder = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(4)])
            decoder = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(4)])
            optimizer = tf.keras.optimizers.Adam(1e-3)
            variables = encoder.trainable_variables + decoder.trainable_variables
            x = tf.random.normal((8, 4))
            for step in range(2):
                h = encoder(x)
                mu, log_var = h[:, :2], h[:, 2:]
                recon = decoder(mu)  # expect: GT212
                with tf.GradientTape() as tape:
                    loss = total_loss(x, recon, mu, log_var)
                grads = tape.gradient(loss, variables)
                optimizer.apply_gradients(zip(grads, variables))
            """,
            truth=Truth(raises=("ValueError", "No gradients provided"), framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for node, (name, stmt, with_node) in facts.after_targets.items():
            end = with_node.end_lineno or with_node.lineno
            yield ctx.report(
                stmt,
                f"`{name}` is computed after the tape's block ends (line {end}): "
                f"`{ctx.source.segment(node.func)}()` on line {node.lineno} returns None.",
                data={"lost": [name]},
            )
        for node, (name, before, _target, with_node) in facts.forward_outside.items():
            if isinstance(before, ast.Name):  # an argument of the step: where the caller computed it
                binding = ctx.source.semantic.sole_binding(before)
                if binding is not None and binding.kind == "assignment":
                    before = binding.statement
            yield ctx.report(
                before,
                f"`{name}` is computed before the tape on line {with_node.lineno} starts: "
                f"`{ctx.source.segment(node.func)}()` on line {node.lineno} returns None.",
                data={"lost": [name]},
            )
        for node, (name, stmt, loss_fn) in facts.stale_losses.items():
            yield ctx.report(
                stmt,
                f"`{name}` is computed here, outside `{loss_fn}`: `minimize()` on line {node.lineno} gets None "
                f"gradients.",
                data={"lost": [name]},
            )
        for lc in facts.lost_cuts.values():
            if lc.cut.kind in ("snapshot", "dataset"):
                yield ctx.report(lc.cut.node, lost_message(facts, lc.lost, lc.sink_kind, lc.cut.op),
                                 data={"lost": facts.names(lc.lost), "op": lc.cut.op})
        for node, (name, before) in facts.outside_targets.items():
            yield ctx.report(
                node,
                f"`{name}` was computed on line {before.lineno}, before this tape started recording: every gradient is None.",
                data={"lost": [name]},
            )
