"""GT210: a trainable variable or layer that the model or loss never uses."""

from __future__ import annotations

import ast

from gradtrace.analysis.frameworks.tensorflow import api
from gradtrace.analysis.frameworks.tensorflow.events import VarInfo
from gradtrace.rules.base import Invalid, Rule, Truth
from gradtrace.rules.gt209_unconnected_gradient_source import unconnected


def attribute_loads(source) -> set[str]:
    """Every attribute name the file reads (`*`: a dynamic name, anything may be read)."""
    out = {node.attr for node in source.nodes(ast.Attribute) if isinstance(node.ctx, ast.Load)}
    for node in source.nodes(ast.Call):
        if isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr", "setattr") and len(node.args) >= 2:
            name = node.args[1]
            out.add(name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else "*")
    return out


ALL_LAYERS = frozenset({"layers", "submodules", "_layers", "_flatten_layers", "_self_tracked_trackables",
                        "trainable_variables", "trainable_weights", "variables", "weights", "__dict__"})


def self_loads(nodes) -> dict[str, int]:
    """`self.<attr>` reads in these functions -> the first line."""
    out: dict[str, int] = {}
    for fn in nodes:
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and isinstance(
                    node.value, ast.Name) and node.value.id == "self":
                out[node.attr] = min(out.get(node.attr, node.lineno), node.lineno)
    return out


def call_reachable(info, functions) -> list:
    """The class's `call`/`__call__` and the same-file methods and functions it calls, transitively."""
    todo = [info.methods[m] for m in ("call", "__call__") if m in info.methods]
    seen: list = []
    while todo:
        fn = todo.pop()
        if any(fn is f for f in seen):
            continue
        seen.append(fn)
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                    and node.attr in info.methods:
                todo.append(info.methods[node.attr])
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in functions:
                todo.append(functions[node.id])
    return seen


def dead_layers(ctx, facts):
    """Layers a Keras layer/model's `call` reads but whose output never reaches what `call` returns.

    Yields (class name, attribute, definition node, line of the read)."""
    if not facts.call_live:
        return
    tree_loads: dict[str, list] = {}
    for node in ctx.source.nodes(ast.Attribute):
        if isinstance(node.ctx, ast.Load):
            tree_loads.setdefault(node.attr, []).append(node)
    for cls_name, info in facts.classes.items():
        live = facts.call_live.get(cls_name)
        if live is None or cls_name in facts.call_incomplete or not facts.is_module_class(info):
            continue
        if not all(b in facts.classes or api.layer_base(b) for b in info.bases):
            continue  # a base class from elsewhere may read the layer too
        reachable = call_reachable(info, facts.functions)
        inside = self_loads(reachable)
        if ALL_LAYERS & inside.keys() or any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in (
                "getattr", "vars", "setattr") for fn in reachable for n in ast.walk(fn)):
            continue
        ids = {id(n) for fn in reachable for n in ast.walk(fn)}
        for attr, val in info.attrs.items():
            if attr not in inside or val.kind != "module" or val.made_at is None or not val.srcs or \
                    not isinstance(val.ref, str) or any(o in live for o in val.srcs):
                continue
            if any(id(n) not in ids for n in tree_loads.get(attr, ())):
                continue  # read somewhere else too: another method, the training loop, a subclass
            layer = val.made_at.func if isinstance(val.made_at, ast.Call) else None
            tail = (ast.unparse(layer) if layer is not None else "").rsplit(".", 1)[-1]
            if not tail or api.weightless(tail) or not (
                    (ctx.names.qualname(layer) or "").startswith(("keras.", "tensorflow."))):
                continue
            yield cls_name, attr, val.made_at, inside[attr]


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
    `optimizer.apply_gradients` that the loss never uses. Also flags a Keras layer with weights that
    `call()` (or a method or function it calls) does call, but whose result never reaches what
    `call()` returns (`g = self.gate(x)` and `g` is dropped); a layer also read elsewhere (another
    method, the training step, a subclass) or reached through `self.layers`/`getattr` stays quiet.

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
        """
        import tensorflow as tf

        class Scorer(tf.keras.Model):
            def __init__(self):
                super().__init__()
                self.body = tf.keras.layers.Dense(4)
                self.weighting = tf.keras.layers.Dense(4, activation="sigmoid")
                self.heads = [tf.keras.layers.Dense(1) for _ in range(2)]

            def gated(self, x):
                return self.body(x) * self.weighting(x)

            def call(self, x):
                h = self.gated(x)
                return tf.add_n([head(h) for head in self.heads])
        """,
        """
        import tensorflow as tf

        class Scale(tf.keras.layers.Layer):
            def build(self, input_shape):
                self.input_spec = tf.keras.layers.InputSpec(ndim=len(input_shape))
                self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

            def call(self, x):
                return x * self.scale
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
        Invalid(
            """
            import tensorflow as tf

            class Scorer(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.body = tf.keras.layers.Dense(4)
                    self.weighting = tf.keras.layers.Dense(4, activation="sigmoid")  # expect: GT210
                    self.out = tf.keras.layers.Dense(1)

                def call(self, x):
                    h = self.body(x)
                    w = self.weighting(x)
                    return self.out(tf.nn.relu(h))

            model = Scorer()
            x = tf.ones([2, 3])
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(model(x))
            grads = tape.gradient(loss, model.trainable_variables)
            """,
            truth=Truth(grads={"grads[[v is model.weighting.kernel for v in model.trainable_variables].index(True)]":
                               "none"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        reported = set()
        if not any(info.attrs for info in facts.classes.values()) and not facts.applied_gradients:
            return
        loads = attribute_loads(ctx.source)
        for cls_name, info in facts.classes.items():
            interp_cls = info
            for attr, val in interp_cls.attrs.items():
                if attr in loads or "*" in loads:
                    continue
                what = None
                if isinstance(val.ref, VarInfo) and val.ref.trainable and val.ref.cls == cls_name:
                    what, node = "trainable variable", val.ref.node
                elif val.kind == "module" and val.made_at is not None and val.srcs:
                    what, node = "layer", val.made_at
                if what is None or not self._is_module(ctx, info):
                    continue
                reported.add(id(node))
                yield ctx.report(
                    node,
                    f"`self.{attr}` is a {what} of `{cls_name}` that nothing reads: it gets no gradient.",
                    data={"lost": [f"{cls_name}.{attr}"]},
                )
        for cls_name, attr, node, line in dead_layers(ctx, facts):
            if id(node) in reported:
                continue
            reported.add(id(node))
            method = "call" if "call" in facts.classes[cls_name].methods else "__call__"
            yield ctx.report(
                node,
                f"The output of `self.{attr}` (line {line}) never reaches what `{method}()` returns: "
                "it gets no gradient.",
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
                    f"`{name}` is given to the optimizer, but the loss on line {call.node.lineno} never uses it: "
                    "its gradient is None.",
                    data={"lost": [name]},
                )

    @staticmethod
    def _is_module(ctx, info) -> bool:
        return any(api.layer_base(b) for b in info.bases)
