"""GT211: `x = x - lr * g` rebinds a tf.Variable's name to a plain tensor."""

from __future__ import annotations

import ast

from gradtrace.findings import Edit, Fix
from gradtrace.rules.base import Invalid, Rule, Truth

ASSIGN_METHOD = {ast.Sub: "assign_sub", ast.Add: "assign_add"}


def assign_fix(ctx, stmt, name) -> Fix | None:
    if isinstance(stmt, ast.AugAssign):
        method = ASSIGN_METHOD.get(type(stmt.op))
        value = ctx.source.segment(stmt.value)
        if method is None:
            return None
    elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        v = stmt.value
        if isinstance(v, ast.BinOp) and type(v.op) in ASSIGN_METHOD and isinstance(v.left, (ast.Name, ast.Attribute)) \
                and ast.unparse(v.left) == name:
            method, value = ASSIGN_METHOD[type(v.op)], ctx.source.segment(v.right)
        else:
            method, value = "assign", ctx.source.segment(v)
    else:
        return None
    s = ctx.span(stmt)
    return Fix(f"Update the variable in place with `{name}.{method}(...)`", True,
               (Edit(s.line, s.column, s.end_line, s.end_column, f"{name}.{method}({value})"),))


class VariableReboundToTensor(Rule):
    code = "GT211"
    name = "variable-rebound-to-tensor"
    summary = "A tf.Variable's name is rebound to a tensor (x = x - lr * g): the next gradient is None."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `x = x - lr * g`, `x -= lr * g` and similar assignments that compute a new value from a
    `tf.Variable` and bind it to the variable's own name, when the variable is differentiated or read
    under a tape and the assignment runs in a loop; and `self.w = self.w - lr * g` in a method that
    differentiates `self.w` under a tape (the attribute outlives the call: the next call fails).

    ## Why is this bad?
    The arithmetic returns a plain `tf.Tensor`: after the first step `x` is no longer a variable, the
    tape does not watch it, and the next `tape.gradient(y, x)` returns `None` (the update then fails
    with a `TypeError` on `None`, or the parameter silently stops training).

    ## Example
    ```python
    for _ in range(steps):
        with tf.GradientTape() as tape:
            y = x ** 2
        x = x - 0.1 * tape.gradient(y, x)
    ```

    ## Use instead
    ```python
        x.assign_sub(0.1 * tape.gradient(y, x))
    ```

    ## Fix safety
    The fix replaces the assignment with `x.assign_sub(...)`/`assign_add(...)`/`assign(...)`. It is
    safe: the variable takes the same values and stays a variable.
    """
    valid = (
        """
        import tensorflow as tf

        x = tf.Variable(2.0)
        for _ in range(3):
            with tf.GradientTape() as tape:
                y = x ** 2
            x.assign_sub(0.1 * tape.gradient(y, x))
        """,
        """
        import tensorflow as tf

        x = tf.Variable(2.0)
        x = x * 1.0
        print(x)
        """,
        """
        import tensorflow as tf


        class Scale:
            def __init__(self):
                self.w = tf.Variable(2.0)
                self.velocity = tf.zeros([])

            def step(self, x, lr=0.1):
                with tf.GradientTape() as tape:
                    loss = (self.w * x - 1.0) ** 2
                g = tape.gradient(loss, self.w)
                self.velocity = 0.9 * self.velocity + g
                self.w.assign_sub(lr * self.velocity)
                return loss
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf

            x = tf.Variable(2.0)
            grads = []
            for _ in range(2):
                with tf.GradientTape() as tape:
                    y = x ** 2
                g = tape.gradient(y, x)
                grads.append(g)
                x = x - 0.1 * g  # expect: GT211
            """,
            fixed="""
            import tensorflow as tf

            x = tf.Variable(2.0)
            grads = []
            for _ in range(2):
                with tf.GradientTape() as tape:
                    y = x ** 2
                g = tape.gradient(y, x)
                grads.append(g)
                x.assign_sub(0.1 * g)  # expect: GT211
            """,
            truth=Truth(raises=("TypeError", "NoneType"), framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf


            class Scale:
                def __init__(self):
                    self.w = tf.Variable(2.0)

                def step(self, x, lr=0.1):
                    with tf.GradientTape() as tape:
                        loss = (self.w * x - 1.0) ** 2
                    g = tape.gradient(loss, self.w)
                    self.w = self.w - lr * g  # expect: GT211
                    return loss


            model = Scale()
            for _ in range(2):
                model.step(3.0)
            """,
            fixed="""
            import tensorflow as tf


            class Scale:
                def __init__(self):
                    self.w = tf.Variable(2.0)

                def step(self, x, lr=0.1):
                    with tf.GradientTape() as tape:
                        loss = (self.w * x - 1.0) ** 2
                    g = tape.gradient(loss, self.w)
                    self.w.assign_sub(lr * g)  # expect: GT211
                    return loss


            model = Scale()
            for _ in range(2):
                model.step(3.0)
            """,
            truth=Truth(raises=("TypeError", "NoneType"), framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for stmt, (name, info, in_loop) in facts.rebinds.items():
            if not in_loop or not (info.listed or info.read_in_tape):
                continue
            if "." in name and not info.listed:  # an attribute only read under a tape may be a schedule
                continue
            yield ctx.report(
                stmt,
                f"This rebinds `{name}` from a tf.Variable to a plain tensor: from the next step on its gradient is None.",
                fix=assign_fix(ctx, stmt, name),
                data={"lost": [name]},
            )
