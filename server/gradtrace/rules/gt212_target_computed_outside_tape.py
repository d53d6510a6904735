"""GT212: the target of tape.gradient was computed before the tape started recording."""

from __future__ import annotations

from gradtrace.analysis.tf_flow import tf_facts
from gradtrace.rules.base import Invalid, Rule, Truth


class TargetComputedOutsideTape(Rule):
    code = "GT212"
    name = "target-computed-outside-tape"
    summary = "tape.gradient differentiates a loss computed before the `with GradientTape()` block: all None."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `tape.gradient(loss, ...)` when `loss` depends on trainable variables but was computed
    before the tape's `with` block and is not recomputed inside it, and the line that computes `loss`
    (a loss object, a model or a TensorFlow op) after the `with` block ended, before the gradient.

    ## Why is this bad?
    A tape records only the operations that run while it is active. A loss computed earlier has no
    recorded path to the variables: every gradient is `None`, and `apply_gradients` raises "No
    gradients provided for any variable".

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
    )
    invalid = (
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
    )

    def check(self, ctx):
        facts = tf_facts(ctx)
        for node, (name, stmt, with_node) in facts.after_targets.items():
            end = with_node.end_lineno or with_node.lineno
            yield ctx.report(
                stmt,
                f"`{name}` is computed here, after the tape's `with` block ended on line {end}, so the tape did "
                f"not record it and `{ctx.source.segment(node.func)}()` on line {node.lineno} returns None for "
                f"every variable; compute `{name}` inside the `with` block.",
                data={"lost": [name]},
            )
        for node, (name, before) in facts.outside_targets.items():
            yield ctx.report(
                node,
                f"`{name}` was computed on line {before.lineno}, before this tape started recording, so the tape "
                f"has no path from it to the variables and every gradient is None; compute `{name}` inside the "
                f"`with` block.",
                data={"lost": [name]},
            )
