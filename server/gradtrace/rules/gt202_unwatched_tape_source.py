"""GT202: `tape.gradient` with respect to a tensor the tape never watched."""

from __future__ import annotations

import ast

from gradtrace.analysis.tf_flow import VarInfo, tf_facts
from gradtrace.analysis.tfjax_fixes import watch_fix
from gradtrace.rules.base import Invalid, Rule, Truth

CONSTANT_KINDS = ("tensor", "numpy", "pyfloat")


class UnwatchedTapeSource(Rule):
    code = "GT202"
    name = "unwatched-tape-source"
    summary = "tape.gradient asks for the gradient of a constant tensor the tape never watched: it returns None."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `tape.gradient(target, source)` (and `jacobian`) when `source` is a tensor — `tf.constant`,
    `tf.zeros`, `tf.linspace`, a NumPy array, a function argument that receives one — rather than a
    trainable `tf.Variable`, and the tape never called `tape.watch(source)`. This includes an inner tape
    that differentiates with respect to an input (a PINN residual, a gradient penalty).

    ## Why is this bad?
    A tape records operations on trainable variables automatically, but on plain tensors only once
    they are watched. The gradient with respect to an unwatched tensor is `None` (zeros with
    `unconnected_gradients=ZERO`), and code that uses it raises or silently learns nothing.

    ## Example
    ```python
    x = tf.constant(3.0)
    with tf.GradientTape() as tape:
        y = x * x
    dy_dx = tape.gradient(y, x)   # None
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = x * x
    dy_dx = tape.gradient(y, x)   # 6.0
    ```

    ## Fix safety
    The fix inserts `tape.watch(source)` as the first statement of the `with` block. It is safe: watching
    only makes the tape record the operations that use the tensor.
    """
    valid = (
        """
        import tensorflow as tf

        x = tf.constant(3.0)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = x * x
        dy_dx = tape.gradient(y, x)
        """,
        """
        import tensorflow as tf

        w = tf.Variable(3.0)
        with tf.GradientTape() as tape:
            h = w * 2.0
            y = h * h
        dy_dh = tape.gradient(y, h)
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf

            x = tf.constant(3.0)
            with tf.GradientTape() as tape:
                y = x * x
            dy_dx = tape.gradient(y, x)  # expect: GT202
            """,
            fixed="""
            import tensorflow as tf

            x = tf.constant(3.0)
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = x * x
            dy_dx = tape.gradient(y, x)  # expect: GT202
            """,
            truth=Truth(grads={"dy_dx": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            def slope(f, t):
                with tf.GradientTape() as g:
                    y = f(t)
                return g.gradient(y, t)  # expect: GT202

            ts = tf.linspace(0.0, 1.0, 5)
            d = slope(tf.sin, ts)
            """,
            fixed="""
            import tensorflow as tf

            def slope(f, t):
                with tf.GradientTape() as g:
                    g.watch(t)
                    y = f(t)
                return g.gradient(y, t)  # expect: GT202

            ts = tf.linspace(0.0, 1.0, 5)
            d = slope(tf.sin, ts)
            """,
            truth=Truth(grads={"d": "none"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = tf_facts(ctx)
        for call in facts.grad_calls.values():
            tape = call.tape
            if tape.watch_unknown:
                continue
            for expr, val in call.sources:
                if isinstance(val.ref, VarInfo) or val.origins or val.kind not in CONSTANT_KINDS:
                    continue
                text = ast.unparse(expr) if expr is not None else None
                if text and text in tape.watched:
                    continue
                label = f"`{text}`" if text else "a source"
                fix = watch_fix(ctx, tape.with_node, tape.name, text) if isinstance(
                    expr, (ast.Name, ast.Attribute)) else None
                yield ctx.report(
                    call.node,
                    f"{label} is a constant tensor, not a trainable variable, and `{tape.name or 'the tape'}` never "
                    f"watches it, so its gradient is None; call `{tape.name or 'tape'}.watch({text or 'x'})` inside "
                    f"the `with` block.",
                    fix=fix,
                    data={"lost": [text] if text else []},
                )
