"""GT207: a second gradient() call on a non-persistent GradientTape."""

from __future__ import annotations

import ast

from gradtrace.analysis.tfjax_fixes import persistent_fix
from gradtrace.rules.base import Invalid, Rule, Truth


def exclusive(parents, a, b) -> bool:
    """Are `a` and `b` in different branches of the same `if`?"""
    chain = {}
    cur, prev = a, None
    while cur is not None:
        chain[id(cur)] = prev
        prev, cur = cur, parents.get(id(cur))
    cur, prev = b, None
    while cur is not None:
        if id(cur) in chain:
            if isinstance(cur, ast.If):
                pa = chain[id(cur)]
                return (pa in cur.body) != (prev in cur.body) and cur.test not in (pa, prev)
            return False
        prev, cur = cur, parents.get(id(cur))
    return False


class NonPersistentTapeReused(Rule):
    code = "GT207"
    name = "non-persistent-tape-reused"
    summary = "A non-persistent GradientTape computes gradients twice: the second call raises RuntimeError."
    severity = "error"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags the second `gradient()`/`jacobian()` call on a tape created without `persistent=True`, or a
    call in a loop that runs after the tape closed.

    ## Why is this bad?
    A non-persistent tape releases its resources after the first call; the next one raises
    `RuntimeError: A non-persistent GradientTape can only be used to compute one set of gradients`.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        g_loss = ...
        d_loss = ...
    g_grads = tape.gradient(g_loss, generator.trainable_variables)
    d_grads = tape.gradient(d_loss, discriminator.trainable_variables)   # RuntimeError
    ```

    ## Use instead
    ```python
    with tf.GradientTape(persistent=True) as tape:
        ...
    g_grads = tape.gradient(g_loss, generator.trainable_variables)
    d_grads = tape.gradient(d_loss, discriminator.trainable_variables)
    del tape
    ```
    Or use one tape per loss.

    ## Fix safety
    The fix adds `persistent=True`. It is safe for the result, but a persistent tape keeps its
    intermediate tensors until it is garbage-collected: add `del tape` after the last call when memory
    matters.
    """
    valid = (
        """
        import tensorflow as tf

        x = tf.Variable(2.0)
        with tf.GradientTape(persistent=True) as tape:
            y = x ** 2
            z = x ** 3
        dy = tape.gradient(y, x)
        dz = tape.gradient(z, x)
        del tape
        """,
        """
        import tensorflow as tf

        x = tf.Variable(2.0)
        for _ in range(3):
            with tf.GradientTape() as tape:
                y = x ** 2
            dy = tape.gradient(y, x)
        """,
        """
        import tensorflow as tf

        x = tf.Variable(2.0)
        use_square = True
        with tf.GradientTape() as tape:
            y = x ** 2
            z = x ** 3
        if use_square:
            g = tape.gradient(y, x)
        else:
            g = tape.gradient(z, x)
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf

            x = tf.Variable(2.0)
            with tf.GradientTape() as tape:
                y = x ** 2
                z = x ** 3
            dy = tape.gradient(y, x)
            dz = tape.gradient(z, x)  # expect: GT207
            """,
            fixed="""
            import tensorflow as tf

            x = tf.Variable(2.0)
            with tf.GradientTape(persistent=True) as tape:
                y = x ** 2
                z = x ** 3
            dy = tape.gradient(y, x)
            dz = tape.gradient(z, x)  # expect: GT207
            """,
            truth=Truth(raises=("RuntimeError", "non-persistent GradientTape"), framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            ws = [tf.Variable(1.0), tf.Variable(2.0)]
            with tf.GradientTape() as tape:
                loss = ws[0] * ws[1]
            per_var = []
            for w in ws:
                per_var.append(tape.gradient(loss, w))  # expect: GT207
            """,
            fixed="""
            import tensorflow as tf

            ws = [tf.Variable(1.0), tf.Variable(2.0)]
            with tf.GradientTape(persistent=True) as tape:
                loss = ws[0] * ws[1]
            per_var = []
            for w in ws:
                per_var.append(tape.gradient(loss, w))  # expect: GT207
            """,
            truth=Truth(raises=("RuntimeError", "non-persistent GradientTape"), framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for tape in facts.tapes.values():
            if tape.persistent or not tape.calls:
                continue
            parents = ctx.source.parents
            calls = sorted(tape.calls, key=lambda c: (c.node.lineno, c.node.col_offset))
            name = tape.name or "the tape"
            flagged = None
            for i, call in enumerate(calls):
                if call.in_loop:
                    flagged = (call, f"`{name}.{call.method}()` runs in a loop on a non-persistent tape")
                    break
                if i > 0 and not any(exclusive(parents, prev.node, call.node) for prev in calls[:i]):
                    flagged = (call, f"`{name}` is not persistent and already ran `{calls[0].method}()` on line "
                                     f"{calls[0].node.lineno}")
                    break
            if flagged is None:
                continue
            call, why = flagged
            yield ctx.report(
                call.node,
                f"{why}: this call raises RuntimeError.",
                fix=persistent_fix(ctx, tape.node),
            )
