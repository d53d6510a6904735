"""GT213: a value reaches the loss only through `variable.assign(...)` inside the tape."""

from __future__ import annotations

from gradtrace.rules.base import Invalid, Rule, Truth
from gradtrace.rules.gt203_tf_stop_gradient_only_path import lost_message


class AssignInsideTape(Rule):
    code = "GT213"
    name = "assign-inside-tape"
    summary = "Stateful variable.assign() inside the tape: the assigned value's variables get no gradient."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `v.assign(expr)`, `assign_add` and `assign_sub` inside a `GradientTape` when trainable
    variables in `expr` reach the loss only through `v`.

    ## Why is this bad?
    Tapes do not record assignments to variables: reading `v` afterwards has no path back to `expr`,
    so the variables in `expr` get `None`.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        state.assign(w * x)
        loss = tf.reduce_sum(state ** 2)
    tape.gradient(loss, w)     # None
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        h = w * x
        loss = tf.reduce_sum(h ** 2)
    state.assign(h)
    ```

    ## Fix safety
    No automatic fix: keep intermediate state in plain tensors.
    """
    valid = (
        """
        import tensorflow as tf

        w = tf.Variable(2.0)
        state = tf.Variable(0.0, trainable=False)
        with tf.GradientTape() as tape:
            h = w * 3.0
            loss = h ** 2
        state.assign(h)
        g = tape.gradient(loss, w)
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf

            w = tf.Variable(2.0)
            state = tf.Variable(0.0, trainable=False)
            with tf.GradientTape() as tape:
                state.assign(w * 3.0)  # expect: GT213
                loss = state ** 2
            g = tape.gradient(loss, w)
            """,
            truth=Truth(grads={"g": "none"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for lc in facts.lost_cuts.values():
            if lc.cut.kind != "assign":
                continue
            msg = lost_message(facts, lc.lost, lc.sink_kind, f"`{lc.cut.op}`, which the tape does not record,")
            yield ctx.report(lc.cut.node, msg,
                             data={"lost": facts.names(lc.lost), "op": lc.cut.op})
