"""GT306: jax.grad differentiates other arguments than the parameters its gradients update."""

from __future__ import annotations

import ast
import re

from gradtrace.analysis.frameworks.common import in_file
from gradtrace.analysis.names import dotted
from gradtrace.rules.base import Invalid, Rule, Truth


def free_names(fn, functions: dict | None = None, depth: int = 0) -> set[str]:
    """The names `fn` reads from an enclosing scope, also through the file's functions it calls by name
    (`loss` calling `model(x)`, which reads the global `params`)."""
    bound = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)} if hasattr(fn, "args") else set()
    stores = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    loads = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    free = loads - bound - stores
    if functions and depth < 4:
        for name in sorted(free):
            callee = functions.get(name)
            if callee is not None and callee is not fn:
                free |= free_names(callee, functions, depth + 1) - {name}
    return free


PARAMETERS = re.compile(r"param|weights", re.IGNORECASE)  # a pytree of trainable values, by its name
KEPT_FIXED = re.compile(r"target|old|prev|ema|avg|average|teacher|frozen|fixed|slow|momentum|baseline|init|ref",
                        re.IGNORECASE)


def _argnums_text(gf) -> str:
    return str(gf.argnums[0]) if len(gf.argnums) == 1 else str(tuple(gf.argnums))


class ArgnumsMismatch(Rule):
    code = "GT306"
    name = "argnums-mismatch"
    summary = "The gradients update a variable that jax.grad does not differentiate (wrong argnums or closure)."
    severity = "warning"
    framework = "jax"
    docs = """
    ## What it does
    Follows the result of a `jax.grad`/`value_and_grad` call to the update that consumes it
    (`tree_map(lambda p, g: p - lr * g, params, grads)`, `params - lr * grads`,
    `optax.apply_updates(params, updates)`) and checks that the updated variable is an argument that
    `argnums` differentiates. It flags the call when that variable is passed at another position, or
    when the differentiated function reads it from a closure instead of an argument (itself, or through the
    file's functions it calls: a `loss(x, y)` whose `predict(x)` reads the global `params`). Only a real
    update counts: in the function that called `jax.grad`, with a `tree_map` function that adds or
    subtracts (comparing gradients in a test helper, `tree_map(jnp.allclose, a, b)`, is no update).
    With a tuple `argnums`, the outputs are paired with it in order (`gw, gb = grad_fn(w, b, x)` or
    `grads[1]`): output k is the gradient with respect to argument `argnums[k]`, and it flags the
    `argnums` when output k updates a variable passed at another position, e.g. `argnums=(0, 2)`
    differentiating the data `x` while `b`, argument 1, is updated with the second output. Gradients
    with respect to an input that update nothing (saliency, adversarial examples) are fine.
    It also flags gradients taken with respect to a model's output computed before `jax.grad` runs
    (`preds = model.apply(params, x)`, then `jax.grad(loss)(preds, y)` updating `params`).
    It also flags a differentiated argument that the function never reads while it reads a same-named
    attribute instead (`jax.grad(self.loss)` with `def loss(self, params, x): ... self.params ...`):
    the output does not depend on the differentiated value, so its gradient is all zeros. And a pytree of
    parameters the function reads but `argnums` leaves out while the step updates the differentiated ones
    (`jax.grad(loss)(body_params, head_params, x)`): a target network's or an average's parameters, left out
    on purpose, are not reported. And a differentiated argument that is no JAX type — a flax linen module,
    a function (`jax.value_and_grad(loss)(model, params, x)` with the default `argnums=0`): the call raises
    TypeError.

    ## Why is this bad?
    `jax.grad` differentiates only `argnums` (default: the first argument); other inputs are data to
    it. With the parameters in another position or closed over, the "gradients" are with respect to
    the data. The update either
    fails with a pytree-structure error or silently moves the parameters in a meaningless direction;
    a function that reads `self.params` instead of its differentiated argument gets all-zero
    gradients. Pass the parameters at a position listed in `argnums`, and unpack the gradients in the
    order of `argnums`.

    ## Example
    ```python
    def loss(x, params): ...
    grads = jax.grad(loss)(x, params)            # gradient w.r.t. x
    params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
    ```

    ## Use instead
    ```python
    grads = jax.grad(loss, argnums=1)(x, params)
    ```
    Or put `params` first in the signature.

    ## Fix safety
    No automatic fix: the signature or `argnums` may be the intended one.
    """
    valid = (
        """
        import jax
        import jax.numpy as jnp

        class Trainer:
            def __init__(self):
                self.params = {"w": jnp.ones(3)}
                self.scale = 2.0
                self.grad = jax.jit(jax.grad(self.loss))

            def loss(self, params, x):
                return jnp.sum((x @ params["w"] * self.scale) ** 2)

            def step(self, x):
                grads = self.grad(self.params, x)
                self.params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, self.params, grads)

        Trainer().step(jnp.ones((2, 3)))
        """,
        """
        import jax
        import jax.numpy as jnp

        def loss(x, params):
            return jnp.sum((x @ params["w"]) ** 2)

        params = {"w": jnp.ones((3, 1))}
        x = jnp.ones((4, 3))
        grads = jax.grad(loss, argnums=1)(x, params)
        params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
        """,
        """
        import jax
        import jax.numpy as jnp

        def close(a, b):
            return all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(jnp.allclose, a, b)))

        def energy(a, b):
            return jnp.sum((a - b) ** 2)

        a, b = jnp.ones(3), jnp.zeros(3)
        assert close(jax.grad(energy, 0)(a, b), 2.0 * (a - b))
        """,
        """
        import jax
        import jax.numpy as jnp

        def mse(w, b, x, y):
            return jnp.mean((x @ w + b - y) ** 2)

        x, y = jnp.ones((4, 2)), jnp.zeros(4)
        w, b = jnp.zeros(2), jnp.zeros(())
        gb, gw = jax.grad(mse, argnums=(1, 0))(w, b, x, y)
        w = w - 0.1 * gw
        b = b - 0.1 * gb
        gw, gx = jax.grad(mse, argnums=(0, 2))(w, b, x, y)
        w = w - 0.1 * gw
        x_adv = x + 0.01 * jnp.sign(gx)
        """,
        """
        import jax
        import jax.numpy as jnp


        def td_loss(params, target_params, s, r, s_next):
            q = s @ params["w"]
            q_next = s_next @ target_params["w"]
            return jnp.mean((r + 0.9 * q_next - q) ** 2)


        params = {"w": jnp.ones((4, 2))}
        target_params = params
        s, r, s_next = jnp.ones((8, 4)), jnp.ones((8, 2)), jnp.zeros((8, 4))
        grads = jax.grad(td_loss)(params, target_params, s, r, s_next)
        params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
        """,
    )
    invalid = (
        Invalid(
            """
            import jax
            import jax.numpy as jnp


            def predict(params, x):
                return x @ params["w"] + params["b"]


            def loss(preds, targets):
                return jnp.mean((preds - targets) ** 2)


            params = {"w": jnp.ones((3, 1)), "b": jnp.zeros(1)}
            x, y = jnp.ones((4, 3)), jnp.zeros((4, 1))
            preds = predict(params, x)
            grads = jax.grad(loss)(preds, y)  # expect: GT306
            params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
            """,
            truth=Truth(raises=("ValueError", "pytree structure"), framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp


            def loss(body_params, head_params, x, y):
                h = jnp.tanh(x @ body_params["w"])
                return jnp.mean((h @ head_params["w"] - y) ** 2)


            body_params = {"w": jnp.full((3, 4), 0.1)}
            head_params = {"w": jnp.full((4, 1), 0.1)}
            head_before = head_params["w"]
            x, y = jnp.ones((8, 3)), jnp.zeros((8, 1))
            for step in range(3):
                grads = jax.grad(loss)(body_params, head_params, x, y)  # expect: GT306
                body_params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, body_params, grads)
            head_moved = head_params["w"] - head_before
            """,
            truth=Truth(grads={"head_moved": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp
            import optax


            def loss_fn(params, x):
                return jnp.mean((x @ params["w"]) ** 2)


            class Learner:
                def __init__(self):
                    self.params = {"w": jnp.ones((3, 1))}
                    self.tx = optax.sgd(0.1)
                    self.opt_state = self.tx.init(self.params)

                def step(self, x):
                    grads = jax.grad(loss_fn, argnums=1)(self.params, x)  # expect: GT306
                    updates, self.opt_state = self.tx.update(grads, self.opt_state)
                    self.params = optax.apply_updates(self.params, updates)


            Learner().step(jnp.ones((4, 3)))
            """,
            truth=Truth(raises=("ValueError", "pytree structure"), framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp
            import optax

            params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}


            def predict(x):
                return x @ params["w"] + params["b"]


            def loss(x, y):
                return jnp.mean((predict(x) - y) ** 2)


            opt = optax.sgd(0.1)
            state = opt.init(params)
            x, y = jnp.ones((4, 3)), jnp.zeros((4, 2))
            grads = jax.grad(loss)(x, y)  # expect: GT306
            updates, state = opt.update(grads, state)
            params = optax.apply_updates(params, updates)
            """,
            truth=Truth(raises=("ValueError", "pytree structure"), framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            class Trainer:
                def __init__(self):
                    self.params = {"w": jnp.ones(3)}
                    self.grad = jax.jit(jax.grad(self.loss))

                def loss(self, params, x):
                    return jnp.sum((x @ self.params["w"]) ** 2)  # expect: GT306

            trainer = Trainer()
            grads = trainer.grad(trainer.params, jnp.ones((2, 3)))
            g_w = grads["w"]
            """,
            truth=Truth(grads={"g_w": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def loss(x, params):
                return jnp.sum((x @ params["w"]) ** 2)

            params = {"w": jnp.ones((3, 1))}
            x = jnp.ones((4, 3))
            grads = jax.grad(loss)(x, params)  # expect: GT306
            params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
            """,
            truth=Truth(raises=("ValueError", "pytree structure"), framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            params = {"w": jnp.ones(3)}
            x = jnp.array([1.0, 2.0, 3.0])

            def loss(inputs):
                return jnp.sum((inputs * params["w"] - 1.0) ** 2)

            grads = jax.grad(loss)(x)  # expect: GT306
            params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
            """,
            truth=Truth(raises=("ValueError", "pytree structure"), framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def mse(w, b, x, y):
                return jnp.mean((x @ w + b - y) ** 2)

            x, y = jnp.ones((4, 2)), jnp.zeros(4)
            w, b = jnp.zeros(2), jnp.zeros(())
            grad_fn = jax.jit(jax.grad(mse, argnums=(0, 2)))  # expect: GT306
            for _ in range(2):
                gw, gb = grad_fn(w, b, x, y)
                w = w - 0.1 * gw
                b = b - 0.1 * gb
            """,
            truth=Truth(raises=("ValueError", "Incompatible shapes"), framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp


            def loss(w, x):
                return jnp.sum((x * w) ** 2)


            grad_fn = jax.grad(loss, argnums=1)  # expect: GT306

            w0 = jnp.ones(3)
            x = jnp.full(3, 2.0)
            g = grad_fn(w0, x)
            w = w0 - 0.1 * g
            with_respect_to_x = g - 2.0 * x * w0 ** 2
            """,
            truth=Truth(grads={"with_respect_to_x": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp
            import optax

            params = {"w": jnp.ones((3,))}
            x = jnp.ones((4, 3))
            opt = optax.adam(0.1)
            state = opt.init(params)


            def loss(inputs):
                return jnp.mean(inputs @ params["w"])


            for _ in range(2):
                grads = jax.grad(loss)(x)  # expect: GT306
                updates, state = opt.update(updates=grads, state=state)
                params = optax.apply_updates(params, updates)
            """,
            truth=Truth(raises=("TypeError", "unsupported operand"), framework="jax"),
        ),
        Invalid(
            """
            import flax.linen as nn
            import jax
            import jax.numpy as jnp


            class Critic(nn.Module):
                @nn.compact
                def __call__(self, x):
                    return nn.Dense(1)(x)


            def loss(model, params, x):
                return jnp.mean(model.apply({"params": params}, x) ** 2)


            model = Critic()
            params = model.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))["params"]
            grad_fn = jax.value_and_grad(loss)  # expect: GT306
            value, grads = grad_fn(model, params, jnp.ones((4, 3)))
            """,
            truth=Truth(raises=("TypeError", "not a valid JAX type"), framework="jax"),
        ),
    )

    def check(self, ctx):
        facts = ctx.jax
        reported: set = set()
        for call_node, updates in facts.updates.items():
            if not isinstance(call_node, ast.Call) or any(isinstance(a, ast.Starred) for a in call_node.args):
                continue
            for applied in updates:
                name, gf, update, index = applied.name, applied.gradients.transform, applied.node, applied.gradients.index
                if gf.argnums is None:
                    continue
                found = self.mismatch(facts, call_node, name, gf, update, index) or self.computed_outside(
                    ctx, call_node, name, gf, update)
                if found is None:
                    continue
                where, why = found
                if id(where) not in reported:
                    reported.add(id(where))
                    yield ctx.report(where, why, data={"lost": [name]})
                break
        yield from self.unused_arguments(ctx, facts, reported)
        yield from self.left_out_parameters(ctx, facts, reported)
        for node, given in facts.non_arrays.items():
            gf = given.transform
            which = "The default argnums=0" if gf.argnums_node is None else f"argnums={_argnums_text(gf)}"
            where = gf.node if gf.node is not None and in_file(ctx.source)(gf.node) else node
            what = given.what if where is node else given.what.replace("`, ", f"` (line {node.lineno}), ", 1)
            yield ctx.report(where, f"{which} differentiates {what}, not an array: the call raises TypeError.",
                             data={"lost": []})

    def left_out_parameters(self, ctx, facts, reported):
        """`jax.value_and_grad(loss)(encoder_params, head_params, x)` with the default `argnums=0` while the step
        updates `encoder_params` with the gradients: `head_params`, which the loss reads, is data to `jax.grad`
        and never trains (a target network's or an average's parameters are left out on purpose)."""
        for call_node, updates in facts.updates.items():
            if not isinstance(call_node, ast.Call) or any(isinstance(a, ast.Starred) for a in call_node.args) \
                    or id(call_node) in reported or not updates:
                continue
            gf = updates[0].gradients.transform
            ref = facts.function_of(gf)
            if gf.argnums is None or ref is None or not isinstance(ref.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            fn = ref.node
            names = ref.params()
            offset = len(ref.bound)
            loads = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            args = call_node.args
            updated = {u.name for u in updates}
            if not any(i < len(args) and isinstance(args[i], ast.Name) and PARAMETERS.search(args[i].id)
                       and args[i].id in updated for i in gf.argnums):
                continue  # not a training step over parameters
            for i, arg in enumerate(args):
                if i in gf.argnums or not isinstance(arg, ast.Name) or arg.id in updated \
                        or not PARAMETERS.search(arg.id) or KEPT_FIXED.search(arg.id):
                    continue
                if i + offset >= len(names) or names[i + offset] not in loads:
                    continue
                reported.add(id(call_node))
                which = "the default argnums=0" if gf.argnums_node is None else f"argnums={_argnums_text(gf)}"
                yield ctx.report(call_node, f"`{arg.id}` is passed to `{fn.name}` but {which} leaves it out: it gets "
                                 "no gradient and never trains.", data={"lost": [arg.id]})
                break

    def unused_arguments(self, ctx, facts, reported):
        """`jax.grad(self.loss)` with `def loss(self, params, x): ... self.params ...`: the differentiated
        argument is never read, a same-named attribute is read instead, so its gradient is all zeros."""
        seen: set = set()
        for gf in facts.transforms:
            ref = facts.function_of(gf)
            if ref is None or gf.argnums is None or not isinstance(ref.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            fn = ref.node
            names = ref.params()
            offset = len(ref.bound)
            if not ref.bound and ref.cls is not None and names[:1] and names[0] in ("self", "cls"):
                offset = 1
            if fn.args.vararg is not None or fn.args.kwarg is not None:
                continue
            loads = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            if "locals" in loads or "vars" in loads:
                continue
            for i in gf.argnums:
                pos = i + offset
                if pos >= len(names) or names[pos] in loads or (fn, names[pos]) in seen:
                    continue
                name = names[pos]
                reads = sorted((n for n in ast.walk(fn) if isinstance(n, ast.Attribute) and n.attr == name
                                and isinstance(n.ctx, ast.Load) and isinstance(n.value, ast.Name)),
                               key=lambda n: (n.lineno, n.col_offset))
                if not reads:
                    continue
                seen.add((fn, name))
                read = reads[0]
                if id(read) in reported:
                    continue
                reported.add(id(read))
                attr = ast.unparse(read)
                yield ctx.report(
                    read,
                    f"`{fn.name}` reads `{attr}` instead of its differentiated argument `{name}`: the gradient is all "
                    "zeros.",
                    data={"lost": [name]},
                )

    @staticmethod
    def computed_outside(ctx, call_node, name, gf, update):
        """`preds = model.apply({"params": params}, x)`, then `jax.grad(loss)(preds, y)` updating `params`: the
        model ran before the differentiated function, so the gradients are the predictions', not the parameters'."""
        args = call_node.args
        if "." in name or any(isinstance(a, ast.Name) and a.id == name for a in args):
            return None
        semantic = ctx.source.semantic
        for i in gf.argnums:
            arg = args[i] if i < len(args) else None
            binding = semantic.binding_of(arg) if isinstance(arg, ast.Name) else None
            value = binding.value if binding is not None and binding.kind == "assignment" else None
            if value is None or not any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(value)):
                continue
            why = (f"These are the gradients of `{arg.id}` (computed from `{name}` on line {binding.statement.lineno}), "
                   f"yet line {update.lineno} updates `{name}` with them.")
            return call_node, why
        return None

    def mismatch(self, facts, call_node, name, gf, update, index):
        """(node to flag, message) when the gradients updating `name` are not its own, else None."""
        args = call_node.args
        positions = [i for i, a in enumerate(args) if isinstance(a, (ast.Name, ast.Attribute)) and dotted(a) == name]
        ref = facts.function_of(gf)
        diff = ", ".join(str(a) for a in gf.argnums)
        if index is not None and len(positions) == 1:
            # `gw, gb = jax.grad(f, argnums=(0, 2))(w, b, x)`: output k is the gradient w.r.t. argnums[k]
            target = gf.argnums[index]
            if target == positions[0]:
                return None
            other = args[target] if target < len(args) else None
            what = f"`{other.id}` (argument {target})" if isinstance(other, ast.Name) else f"argument {target}"
            why = (f"`argnums=({diff}{',' if len(gf.argnums) == 1 else ''})` makes output {index} the gradient of "
                   f"{what}, yet line {update.lineno} updates `{name}` with it.")
            return (gf.argnums_node if gf.argnums_node is not None else call_node), why
        if positions:
            if any(p in gf.argnums for p in positions):
                return None
            if gf.argnums_node is not None and gf.argnums_node.lineno != call_node.lineno:
                # an explicit `argnums=1` written where the gradient function is made: that choice is the slip
                why = (f"`argnums={diff}` leaves out `{name}`, argument {positions[0]} on line {call_node.lineno}: "
                       f"line {update.lineno} updates it with other inputs' gradients.")
                return gf.argnums_node, why
            why = (f"`{name}` is argument {positions[0]}, not in argnums={diff}: line {update.lineno} updates it with "
                   "other inputs' gradients.")
        elif ref is not None and name in free_names(ref.node, facts.plugin.interp.root.functions):
            why = (f"`{name}` is read from a closure, not differentiated: line {update.lineno} updates it with other "
                   "inputs' gradients.")
        else:
            return None
        return call_node, why
