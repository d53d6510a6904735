"""GT210: a trainable variable or layer that the model or loss never uses."""

from __future__ import annotations

import ast

from gradtrace.analysis.tf_flow import VarInfo, tf_facts
from gradtrace.rules.base import Invalid, Rule, Truth
from gradtrace.rules.gt209_unconnected_gradient_source import unconnected


def attribute_loads(tree) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            out.add(node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                "getattr", "hasattr", "setattr") and len(node.args) >= 2:
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                out.add(name.value)
            else:
                out.add("*")  # a dynamic name: anything may be read
    return out


class UnusedTrainableVariable(Rule):
    code = "GT210"
    name = "unused-trainable-variable"
    summary = "A trainable variable (or layer) of a tf.Module/Keras layer, or one handed to the optimizer, is never used."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags a trainable `tf.Variable`/`add_weight`/Keras layer assigned to `self` in a `tf.Module`,
    `keras.layers.Layer` or `keras.Model` that no code in the file ever reads, and a variable handed to
    `optimizer.apply_gradients` that the loss never uses.

    ## Why is this bad?
    The variable is part of `trainable_variables`, so the optimizer receives a `None` gradient for it
    (Keras warns "Gradients do not exist for variables") and it keeps its initial value. Usually the
    forward pass forgot a term (a skip projection, a bias) or a refactor left the weight behind.

    ## Example
    ```python
    class Block(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.ones([4, 4]))
            self.w_skip = tf.Variable(tf.ones([4, 4]))
        def __call__(self, x):
            return x @ self.w + x
    ```

    ## Use instead
    ```python
        def __call__(self, x):
            return x @ self.w + x @ self.w_skip
    ```
    Or delete the unused variable.

    ## Fix safety
    No automatic fix: either the forward pass or the variable is wrong.
    """
    valid = (
        """
        import tensorflow as tf

        class Affine(tf.Module):
            def __init__(self):
                super().__init__()
                self.w = tf.Variable([[1.0], [2.0]])
                self.b = tf.Variable([0.0])

            def __call__(self, x):
                return tf.matmul(x, self.w) + self.b
        """,
        """
        import tensorflow as tf

        class WithStats(tf.Module):
            def __init__(self):
                super().__init__()
                self.w = tf.Variable(1.0)
                self.count = tf.Variable(0.0, trainable=False)

            def __call__(self, x):
                return x * self.w
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf

            class Affine(tf.Module):
                def __init__(self):
                    super().__init__()
                    self.w = tf.Variable([[1.0], [2.0]])
                    self.b = tf.Variable([0.0])
                    self.scale = tf.Variable(1.0)  # expect: GT210

                def __call__(self, x):
                    return tf.matmul(x, self.w) + self.b

            model = Affine()
            x = tf.constant([[1.0, 1.0]])
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(model(x) ** 2)
            grads = tape.gradient(loss, model.trainable_variables)
            """,
            truth=Truth(grads={"grads[[v is model.scale for v in model.trainable_variables].index(True)]": "none"},
                        framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            w = tf.Variable(1.0)
            b = tf.Variable(0.0)  # expect: GT210
            opt = tf.keras.optimizers.SGD(0.1)
            with tf.GradientTape() as tape:
                loss = (w * 3.0 - 1.0) ** 2
            grads = tape.gradient(loss, [w, b])
            opt.apply_gradients(zip(grads, [w, b]))
            """,
            truth=Truth(grads={"grads[1]": "none"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = tf_facts(ctx)
        reported = set()
        if not any(info.attrs for info in facts.classes.values()) and not any(
                c.applied for c in facts.grad_calls.values()):
            return
        loads = attribute_loads(ctx.tree)
        for cls_name, info in facts.classes.items():
            interp_cls = info
            for attr, val in interp_cls.attrs.items():
                if attr in loads or "*" in loads:
                    continue
                what = None
                if isinstance(val.ref, VarInfo) and val.ref.trainable and val.ref.cls == cls_name:
                    what, node = "trainable variable", val.ref.node
                elif val.kind == "module" and val.node is not None and val.origins:
                    what, node = "layer", val.node
                if what is None or not self._is_module(ctx, info):
                    continue
                reported.add(id(node))
                yield ctx.report(
                    node,
                    f"`self.{attr}` is a {what} of `{cls_name}` that nothing ever reads, so it gets no gradient "
                    f"(None) and never trains; use it in the forward pass or remove it.",
                    data={"lost": [f"{cls_name}.{attr}"]},
                )
        for call in facts.grad_calls.values():
            if not call.applied:
                continue
            for expr, info in unconnected(facts, call):
                if id(info.node) in reported:
                    continue
                reported.add(id(info.node))
                name = info.name or (ast.unparse(expr) if expr is not None else "this variable")
                yield ctx.report(
                    info.node,
                    f"`{name}` is handed to the optimizer, but the loss differentiated on line {call.node.lineno} "
                    f"never uses it, so its gradient is None and it never trains; use it or drop it from the list.",
                    data={"lost": [name]},
                )

    @staticmethod
    def _is_module(ctx, info) -> bool:
        from gradtrace.analysis.tf_flow import MODULE_BASES

        return any(b in MODULE_BASES or b.endswith((".Layer", ".Model", ".Module")) for b in info.bases)
