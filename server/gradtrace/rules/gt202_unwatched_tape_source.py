"""GT202: `tape.gradient` with respect to a tensor the tape never watched."""

from __future__ import annotations

import ast

from gradtrace.analysis.core.values import covered
from gradtrace.analysis.frameworks.common import in_file
from gradtrace.analysis.frameworks.tensorflow.events import VarInfo
from gradtrace.analysis.tfjax_fixes import watch_fix
from gradtrace.rules._messages import join_phrases
from gradtrace.rules.base import Invalid, Rule, Truth

CONSTANT_KINDS = ("tensor", "array")


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
    that differentiates with respect to an input (a PINN residual, a gradient penalty). So is a tensor
    computed from the variables before the tape started (`x = x0 + x1`, then `with tf.GradientTape()` and
    `tape.gradient(loss, x)`): the tape never recorded it.

    Also flags, for a tape created with `watch_accessed_variables=False`, the `tape.watch([...])` call
    that leaves out a variable `tape.gradient` is then asked for (the gradient list built before the
    tape, or written in the call), and such a tape asked for a model's `trainable_variables` it never
    watched (Keras layers' variables are not watched either).

    A constant listed next to variables (`tape.gradient(loss, [w1, b1])` with `b1 = tf.zeros(...)`) was
    meant as one: the finding points at the line that made it. `tape.watch(model.inputs)` is flagged too:
    those are the model's symbolic Keras inputs, not the batch it is called on.

    ## Why is this bad?
    A tape records operations on trainable variables automatically, but on plain tensors only once
    they are watched; with `watch_accessed_variables=False` variables too are recorded only once
    watched. The gradient with respect to an unwatched tensor or variable is `None` (zeros with
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

        init = {"scale": tf.ones([2]), "shift": tf.zeros([2])}
        params = tf.nest.map_structure(tf.Variable, init)
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(params["scale"] * 2.0 + params["shift"])
        grads = tape.gradient(y, params)
        """,
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
        """
        import tensorflow as tf

        encoder_w = tf.Variable([[0.5, -0.2], [0.1, 0.3]])
        probe_w = tf.Variable([[0.2], [0.4]])
        probe_b = tf.Variable([0.0])
        probe = [probe_w, probe_b]
        x = tf.ones([3, 2])
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(probe)
            feats = tf.matmul(x, encoder_w)
            loss = tf.reduce_sum(tf.matmul(feats, probe_w) + probe_b)
        grads = tape.gradient(loss, probe)
        """,
        """
        import tensorflow as tf

        critic = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        x = tf.random.normal([8, 4])
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(critic.trainable_variables)
            loss = tf.reduce_mean(critic(x))
        grads = tape.gradient(loss, critic.trainable_variables)
        """,
        """
        import tensorflow as tf

        x0 = tf.Variable(0.5)
        x = x0 + 3.0
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.square(x + 4.0 - 10.0)
        d_x = tape.gradient(loss, x)
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf

            classifier = tf.keras.Sequential([tf.keras.Input((5,)), tf.keras.layers.Dense(2)])
            batch = tf.random.normal([3, 5])
            with tf.GradientTape() as tape:
                tape.watch(classifier.inputs)  # expect: GT202
                logits = classifier(batch)
            """,
            truth=Truth(raises=("ValueError", "not tf.Tensor or tf.Variable"), framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            shift = tf.Variable(tf.zeros([3]))
            scale = tf.ones([3])  # expect: GT202
            x = tf.random.normal([8, 3])
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((x * scale + shift) ** 2)
            d_shift, d_scale = tape.gradient(loss, [shift, scale])
            """,
            truth=Truth(grads={"d_scale": "none"}, framework="tensorflow"),
        ),
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
        Invalid(
            """
            import tensorflow as tf

            adapter = tf.Variable([[0.5, -0.2], [0.1, 0.3]])
            head = tf.Variable([[0.2], [0.4]])
            tuned = [adapter, head]
            x = tf.ones([3, 2])
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(head)  # expect: GT202
                loss = tf.reduce_sum(tf.matmul(tf.matmul(x, adapter), head))
            grads = tape.gradient(loss, tuned)
            """,
            truth=Truth(grads={"grads[0]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            critic = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
            x = tf.random.normal([8, 4])
            with tf.GradientTape(watch_accessed_variables=False) as tape:  # expect: GT202
                loss = tf.reduce_mean(critic(x))
            grads = tape.gradient(loss, critic.trainable_variables)
            """,
            truth=Truth(grads={"grads[0]": "none", "grads[1]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf


            class Adapter(tf.Module):
                def __init__(self):
                    super().__init__()
                    self.w = tf.Variable(tf.fill([4, 4], 0.1))

                def __call__(self, h):
                    return h + h @ self.w


            class Head(tf.Module):
                def __init__(self):
                    super().__init__()
                    self.w = tf.Variable(tf.fill([4, 1], 0.2))

                def __call__(self, h):
                    return h @ self.w


            adapter, head = Adapter(), Head()
            x = tf.ones([3, 4])
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(head.trainable_variables)  # expect: GT202
                loss = tf.reduce_sum(head(adapter(x)))
            train_vars = adapter.trainable_variables + head.trainable_variables
            grads = tape.gradient(loss, train_vars)
            """,
            truth=Truth(grads={"grads[0]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            x0 = tf.Variable(0.5)
            x = x0 + 3.0
            with tf.GradientTape() as tape:
                loss = tf.square(x + 4.0 - 10.0)
            d_x = tape.gradient(loss, x)  # expect: GT202
            """,
            truth=Truth(grads={"d_x": "none"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        yield from self.partly_watched(ctx, facts)
        for node, early in facts.early_sources.items():
            for name, stmt in early:
                yield ctx.report(node, f"`{name}` was computed on line {stmt.lineno}, before the tape started "
                                       f"recording, and is not watched: its gradient is None.",
                                 data={"lost": [name]})
        for tape in facts.tapes.values():
            for watch in tape.symbolic_watches:
                what = ctx.source.segment(watch.args[0]) if watch.args else "it"
                yield ctx.report(watch, f"`{what}` are symbolic Keras inputs, not the batch: `watch()` raises "
                                        f"ValueError on them.",
                                 data={"lost": [what]})
        reported: set = set()
        local = in_file(ctx.source)
        for call in facts.grad_calls.values():
            tape = call.tape
            if tape.watch_unknown:
                continue
            # listed next to variables, a constant is meant as one: the line that made it is the slip
            beside_variables = any(isinstance(v.ref, VarInfo) for _, v in call.source_pairs)
            for expr, val in call.source_pairs:
                if isinstance(val.ref, VarInfo) or val.srcs or not (val.kind in CONSTANT_KINDS or (
                        val.kind == "number" and val.dtype == "float")):
                    continue
                text = ast.unparse(expr) if expr is not None else None
                if text and text in tape.watched:
                    continue
                label = f"`{text}`" if text else "a source"
                made = val.made_at
                if beside_variables and made is not None and local(made):
                    if id(made) not in reported:
                        reported.add(id(made))
                        yield ctx.report(made, f"{label} is made here as a constant, not a tf.Variable, so "
                                               f"`{ctx.source.segment(call.node.func)}()` returns None for it.",
                                         data={"lost": [text] if text else []})
                    continue
                fix = watch_fix(ctx, tape.with_node, tape.name, text) if isinstance(
                    expr, (ast.Name, ast.Attribute)) else None
                yield ctx.report(
                    call.node,
                    f"{label} is a constant, not a variable, and `{tape.name or 'the tape'}` never watches it: "
                    "its gradient is None.",
                    fix=fix,
                    data={"lost": [text] if text else []},
                )

    def partly_watched(self, ctx, facts):
        """`GradientTape(watch_accessed_variables=False)` differentiated for a variable it never watched."""
        for call in facts.grad_calls.values():
            tape = call.tape
            if tape.auto_watch or tape.watch_unknown or tape.watch_opaque:
                continue
            missing = []
            for expr, val in call.source_pairs:
                if val.kind == "varlist" and val.srcs:
                    # `model.trainable_variables`: watched only when the tape was told to watch them
                    unwatched = sorted(s for s in val.srcs if not covered(s, frozenset(tape.watched_ids)))
                    if expr is not None and len(unwatched) == len(val.srcs):
                        missing.append(ctx.source.segment(expr))
                    elif all(s in facts.variables for s in unwatched):  # a part of a list built before the call
                        missing.extend(facts.name(s) for s in unwatched)
                    continue
                info = val.ref if isinstance(val.ref, VarInfo) else None
                if info is None or not info.trainable or info.dtype == "int" or info.id in tape.watched_ids:
                    continue
                missing.append(facts.name(info.id))
            if not missing:
                continue
            names = join_phrases([f"`{n}`" for n in dict.fromkeys(missing)])
            where = tape.watch_nodes[0] if len(tape.watch_nodes) == 1 else tape.node
            what = f"`{ctx.source.segment(where)}`" if where is not tape.node else "This tape"
            yield ctx.report(
                where,
                f"{what} leaves {names} unwatched: `{ctx.source.segment(call.node.func)}()` on line "
                f"{call.node.lineno} returns None for {'it' if len(missing) == 1 else 'them'}.",
                data={"lost": list(dict.fromkeys(missing))},
            )
