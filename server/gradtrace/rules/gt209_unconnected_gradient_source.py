"""GT209: tape.gradient asks for a variable the target does not use."""

from __future__ import annotations

import ast

from gradtrace.analysis.core.values import covered
from gradtrace.analysis.frameworks.tensorflow.events import VarInfo
from gradtrace.analysis.tfjax_fixes import unconnected_fix
from gradtrace.rules._messages import join_phrases
from gradtrace.rules.base import Invalid, Rule, Truth


def unconnected(facts, call):
    """(expr, VarInfo) of trainable float variables in `call`'s sources that its target never uses."""
    target = call.target
    if not target.srcs and not target.cuts:
        return []
    cut_origins = set()
    for cut in target.cuts:
        cut_origins |= cut.lost
    out = []
    for expr, val in call.source_pairs:
        info = val.ref if isinstance(val.ref, VarInfo) else None
        if info is None or not info.trainable or info.dtype == "int":
            continue
        if covered(info.id, target.srcs) or info.id in cut_origins or info.per_step:
            continue
        out.append((expr, info))
    return out


class UnconnectedGradientSource(Rule):
    code = "GT209"
    name = "unconnected-gradient-source"
    summary = "tape.gradient is asked for a variable the target does not depend on: its gradient is None."
    severity = "information"
    framework = "tensorflow"
    docs = """
    ## What it does
    Reports `tape.gradient(target, sources)` when a trainable variable among the sources never reaches
    the target (no cut explains it: the target simply does not use it).

    ## Why is this bad?
    `tape.gradient` returns `None` for unconnected sources. That is sometimes intended (a head that is
    trained by another loss), but `None` breaks arithmetic on the gradients and makes the optimizer skip
    the variable. When the variable is handed to the optimizer, GT210 reports it as a warning.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        y = a * 3.0
    ga, gb = tape.gradient(y, [a, b])      # gb is None
    ```

    ## Use instead
    ```python
    ga, gb = tape.gradient(y, [a, b], unconnected_gradients=tf.UnconnectedGradients.ZERO)
    ```
    Or leave `b` out of the sources.

    ## Fix safety
    The fix adds `unconnected_gradients=tf.UnconnectedGradients.ZERO`. It is not marked safe: it changes
    `None` into zeros, which hides the disconnection.
    """
    valid = (
        """
        import tensorflow as tf

        a = tf.Variable(1.0)
        b = tf.Variable(2.0)
        with tf.GradientTape() as tape:
            y = a * b
        ga, gb = tape.gradient(y, [a, b])
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf

            a = tf.Variable(1.0)
            b = tf.Variable(2.0)
            with tf.GradientTape() as tape:
                y = a * 3.0
            ga, gb = tape.gradient(y, [a, b])  # expect: GT209
            """,
            truth=Truth(grads={"gb": "none"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for call in facts.grad_calls.values():
            if call.has_unconnected:
                continue
            missing = unconnected(facts, call)
            if not missing:
                continue
            names = [f"`{ast.unparse(e) if e is not None else (i.name or '?')}`" for e, i in missing]
            yield ctx.report(
                call.node,
                f"The target of this `{call.method}()` never uses {join_phrases(names)}: "
                f"{'its' if len(names) == 1 else 'their'} gradient is None.",
                fix=unconnected_fix(ctx, call.node),
                data={"lost": [n.strip("`") for n in names]},
            )
