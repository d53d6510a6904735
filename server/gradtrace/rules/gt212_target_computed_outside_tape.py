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
    before the tape's `with` block and is not recomputed inside it.

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
    )

    def check(self, ctx):
        facts = tf_facts(ctx)
        for node, (name, before) in facts.outside_targets.items():
            yield ctx.report(
                node,
                f"`{name}` was computed on line {before.lineno}, before this tape started recording, so the tape "
                f"has no path from it to the variables and every gradient is None; compute `{name}` inside the "
                f"`with` block.",
                data={"lost": [name]},
            )
