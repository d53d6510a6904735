"""GT310: a training loop computes new parameters from the gradients but never rebinds the parameters."""

from __future__ import annotations

import ast

from gradtrace.rules.base import Invalid, Rule, Truth

LOOPS = (ast.For, ast.While, ast.AsyncFor)
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.Module)
UPDATE_WORDS = ("update", "step", "apply", "sgd", "adam", "rmsprop", "momentum", "descent", "optim")
TREE_MAP = {"jax.tree_util.tree_map", "jax.tree_map", "jax.tree.map"}
APPLY_UPDATES = {"optax.apply_updates"}  # return new parameters: a bare call is a lost update
NNX_GRADS = {"flax.nnx.grad", "flax.nnx.value_and_grad"}
JAX_JIT = "jax.jit"


def walk_local(node):
    """`ast.walk` without entering nested functions, lambdas or classes."""
    stack = [node]
    while stack:
        cur = stack.pop()
        yield cur
        for child in ast.iter_child_nodes(cur):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                stack.append(child)


def rebound(loop, name: str) -> bool:
    """Is `name` rebound or changed in place anywhere in the loop (`params = ...`, `params[k] = ...`,
    `params.update(...)`, `params -= ...`)?"""
    for node in walk_local(loop):
        if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, (ast.Store, ast.Del)):
            return True
        if isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(node.ctx, ast.Store) and isinstance(
                node.value, ast.Name) and node.value.id == name:
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(
                node.func.value, ast.Name) and node.func.value.id == name:
            return True  # `params.update(new)`, `params.copy_(...)`
        if isinstance(node, (ast.Global, ast.Nonlocal)) and name in node.names:
            return True
    return False


def read_in(loop, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load) for n in walk_local(loop))


def _returns_what_it_takes(stmt: ast.AST) -> bool:
    """`params, loss, grads = update(params, batch)`: a step that hands back a new value of an argument."""
    if not isinstance(stmt, ast.Assign) or not isinstance(stmt.value, ast.Call):
        return False
    given = {a.id for a in [*stmt.value.args, *(k.value for k in stmt.value.keywords)] if isinstance(a, ast.Name)}
    return any(isinstance(n, ast.Name) and n.id in given for t in stmt.targets for n in ast.walk(t))


def _closed_over(scope, name: str) -> bool:
    """Does a function nested in `scope` read `name` from it (a name it neither takes nor binds itself)?"""
    for fn in ast.walk(scope):
        if fn is scope or not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        own = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)} | {
            n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        if name not in own and any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)
                                   for n in ast.walk(fn)):
            return True
    return False


def target_names(stmt: ast.Assign) -> list[str]:
    return [n.id for t in stmt.targets for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]


class UpdateDiscarded(Rule):
    code = "GT310"
    name = "update-discarded"
    summary = "A training loop computes updated parameters from the gradients but never assigns them back."
    severity = "warning"
    framework = "jax"
    docs = """
    ## What it does
    In a loop that computes gradients of `params` with a `jax.grad`/`value_and_grad` function
    (`loss, grads = grad_fn(params, x, y)`), finds the update call that takes both `params` and `grads`
    (a same-file function that adds or subtracts, a `tree_map` of such a function, or a function named
    like an update: `adam_update`, `sgd_step`, `apply_gradients`) and assigns its result to names, when
    `params` is never rebound in the loop (nor changed in place) and a name the update result goes to
    is never read in the loop. It flags that update call. A bare `optax.apply_updates(params, updates)`,
    whose result nothing receives, is flagged wherever it is. So is `optimizer.update(model, grads)` in a Flax NNX
    step compiled with `@jax.jit` rather than `@nnx.jit`: it updates traced copies of the NNX objects. And
    a loop that gets gradients at every step (from `jax.grad` or from a helper that returns them) into a
    name it never reads: no update is even computed.

    ## Why is this bad?
    JAX arrays are immutable and an update function returns the new parameters: if they are not
    assigned back to `params`, every step differentiates and "updates" the same initial parameters.
    The optimizer state advances, the loss printed at each step stays the same, and the parameters
    never train.

    ## Example
    ```python
    for step in range(100):
        loss, grads = grad_fn(params, x, y)
        updated, opt_state = adam_update(params, grads, opt_state)
    ```

    ## Use instead
    ```python
    for step in range(100):
        loss, grads = grad_fn(params, x, y)
        params, opt_state = adam_update(params, grads, opt_state)
    ```

    ## Fix safety
    No automatic fix: which result is the new parameters is the update function's convention.
    """
    valid = (
        """
        import jax
        import jax.numpy as jnp
        import optax
        from flax import nnx


        class Net(nnx.Module):
            def __init__(self, rngs):
                self.fc = nnx.Linear(3, 1, rngs=rngs)

            def __call__(self, x):
                return self.fc(x)


        @nnx.jit
        def train_step(model, optimizer, x, y):
            def loss_fn(model):
                return jnp.mean((model(x) - y) ** 2)

            loss, grads = nnx.value_and_grad(loss_fn)(model)
            optimizer.update(model, grads)
            return loss


        model = Net(nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
        before = model.fc.kernel.value
        for _ in range(3):
            train_step(model, optimizer, jnp.ones((4, 3)), jnp.zeros((4, 1)))
        delta = model.fc.kernel.value - before
        """,
        """
        import jax
        import jax.numpy as jnp

        def sgd(params, grads, lr=0.1):
            return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)

        def loss_fn(params, x):
            return jnp.sum((x @ params["w"]) ** 2)

        params = {"w": jnp.ones(3)}
        grad_fn = jax.value_and_grad(loss_fn)
        for step in range(3):
            loss, grads = grad_fn(params, jnp.ones((2, 3)))
            updated = sgd(params, grads)
            params = updated
        """,
        """
        import jax
        import jax.numpy as jnp

        def sgd(params, grads, lr):
            return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)

        def loss_fn(params, x):
            return jnp.sum((x @ params["w"]) ** 2)

        params = {"w": jnp.ones(3)}
        best, best_loss = params, float("inf")
        for lr in (0.1, 0.01, 0.001):
            grads = jax.grad(loss_fn)(params, jnp.ones((2, 3)))
            candidate = sgd(params, grads, lr)
            cand_loss = loss_fn(candidate, jnp.ones((2, 3)))
            if cand_loss < best_loss:
                best, best_loss = candidate, cand_loss
        """,
    )
    invalid = (
        Invalid(
            """
            import jax
            import jax.numpy as jnp


            def loss_fn(params, x, y):
                return jnp.mean((x @ params["w"] - y) ** 2)


            @jax.jit
            def grads_fn(params, x, y):
                loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
                return loss, grads


            params = {"w": jnp.full((3, 1), 0.5)}
            start = params["w"]
            x, y = jnp.ones((8, 3)), jnp.zeros((8, 1))
            for step in range(5):
                loss, grads = grads_fn(params, x, y)  # expect: GT310
            moved = params["w"] - start
            """,
            truth=Truth(grads={"moved": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp
            import optax
            from flax import nnx


            class Net(nnx.Module):
                def __init__(self, rngs):
                    self.fc = nnx.Linear(3, 1, rngs=rngs)

                def __call__(self, x):
                    return self.fc(x)


            @jax.jit
            def train_step(model, optimizer, x, y):
                def loss_fn(model):
                    return jnp.mean((model(x) - y) ** 2)

                loss, grads = nnx.value_and_grad(loss_fn)(model)
                optimizer.update(model, grads)  # expect: GT310
                return loss


            model = Net(nnx.Rngs(0))
            optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
            before = model.fc.kernel.value
            for _ in range(3):
                train_step(model, optimizer, jnp.ones((4, 3)), jnp.zeros((4, 1)))
            delta = model.fc.kernel.value - before
            """,
            truth=Truth(grads={"delta": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def momentum_update(params, grads, velocity, lr=0.1, beta=0.9):
                velocity = jax.tree_util.tree_map(lambda v, g: beta * v + g, velocity, grads)
                new_params = jax.tree_util.tree_map(lambda p, v: p - lr * v, params, velocity)
                return new_params, velocity

            def loss_fn(params, x):
                return jnp.sum((x @ params["w"] - 1.0) ** 2)

            params = {"w": jnp.ones(3)}
            w0 = params["w"]
            velocity = jax.tree_util.tree_map(jnp.zeros_like, params)
            grad_fn = jax.jit(jax.value_and_grad(loss_fn))
            for step in range(5):
                loss, grads = grad_fn(params, jnp.ones((2, 3)))
                updated, velocity = momentum_update(params, grads, velocity)  # expect: GT310
            change = params["w"] - w0
            """,
            truth=Truth(grads={"change": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp
            import optax


            def loss(params, x):
                return jnp.mean((x @ params["w"]) ** 2)


            optimizer = optax.sgd(0.1)
            params = {"w": jnp.ones(3)}
            start = params["w"]
            opt_state = optimizer.init(params)
            for step in range(3):
                grads = jax.grad(loss)(params, jnp.ones((4, 3)))
                updates, opt_state = optimizer.update(grads, opt_state)
                optax.apply_updates(params, updates)  # expect: GT310
            change = params["w"] - start
            """,
            truth=Truth(grads={"change": "zero"}, framework="jax"),
        ),
    )

    def check(self, ctx):
        facts = ctx.jax
        yield from self.nnx_under_jax_jit(ctx)
        yield from self.gradients_never_read(ctx, facts)
        if not facts.grad_calls:
            return
        for stmt in ctx.source.nodes(ast.Expr):
            call = stmt.value
            if isinstance(call, ast.Call) and ctx.names.qualname(call.func) in APPLY_UPDATES and call.args:
                params = ast.unparse(call.args[0])
                yield ctx.report(
                    stmt,
                    f"`{ast.unparse(call.func)}` returns the updated parameters, and this line throws them away: "
                    f"`{params}` never changes.",
                    data={"lost": [params]},
                )
        parents = ctx.source.parents
        reported: set = set()
        for differentiated_call in facts.grad_calls:
            call, gf = differentiated_call.node, differentiated_call.transform
            if not isinstance(call, ast.Call) or call is gf.node or gf.argnums is None:
                continue
            stmt = parents.get(id(call))
            if not isinstance(stmt, ast.Assign) or stmt.value is not call or len(stmt.targets) != 1:
                continue
            grads = self.grads_name(stmt.targets[0], gf)
            loop = self.enclosing_loop(call, parents)
            if grads is None or loop is None:
                continue
            differentiated = [call.args[i].id for i in gf.argnums
                              if i < len(call.args) and isinstance(call.args[i], ast.Name)]
            for name in differentiated:
                if rebound(loop, name):
                    continue
                for update, targets in self.updates(ctx, facts, loop, call, name, grads):
                    unused = [t for t in targets if t != name and not read_in(loop, t)]
                    if not unused or id(update) in reported:
                        continue
                    reported.add(id(update))
                    yield ctx.report(
                        update,
                        f"This update goes to `{unused[0]}`, never read, and `{name}` is never reassigned: it never "
                        "trains.",
                        data={"lost": [name]},
                    )

    @staticmethod
    def grads_name(target, gf) -> str | None:
        if gf.mode == "value_and_grad":
            if isinstance(target, (ast.Tuple, ast.List)) and len(target.elts) == 2 and isinstance(
                    target.elts[1], ast.Name):
                return target.elts[1].id
            return None
        if gf.mode != "grad":
            return None
        if gf.has_aux:
            if isinstance(target, (ast.Tuple, ast.List)) and len(target.elts) == 2 and isinstance(
                    target.elts[0], ast.Name):
                return target.elts[0].id
            return None
        return target.id if isinstance(target, ast.Name) else None

    @staticmethod
    def enclosing_loop(node, parents):
        cur = parents.get(id(node))
        while cur is not None and not isinstance(cur, SCOPES):
            if isinstance(cur, LOOPS):
                return cur
            cur = parents.get(id(cur))
        return None

    def updates(self, ctx, facts, loop, grad_call, name, grads):
        """(update call, assigned names) in the loop taking both `name` and `grads`."""
        for stmt in walk_local(loop):
            if not isinstance(stmt, ast.Assign) or not isinstance(stmt.value, ast.Call) or stmt.value is grad_call:
                continue
            call = stmt.value
            passed = {a.id for a in list(call.args) + [k.value for k in call.keywords] if isinstance(a, ast.Name)}
            if not {name, grads} <= passed or not self.is_update(ctx, facts, call):
                continue
            yield call, target_names(stmt)

    @staticmethod
    def is_update(ctx, facts, call) -> bool:
        qual = ctx.names.qualname(call.func) or ""
        func = call.func
        if qual in TREE_MAP:
            func = call.args[0] if call.args else None
            if isinstance(func, ast.Lambda):
                return any(isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub)) for n in ast.walk(func))
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if any(word in name.lower() for word in UPDATE_WORDS):
            return True
        fn = facts.function_named(name) if isinstance(func, ast.Name) else None
        if fn is None:
            return False
        if any(isinstance(n, (ast.Subscript, ast.Attribute)) and isinstance(n.ctx, ast.Store) for n in ast.walk(fn)):
            return False  # it changes its arguments in place
        return any(isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub)) for n in ast.walk(fn))

    @staticmethod
    def gradients_never_read(ctx, facts):
        """A loop that gets gradients at every step (`loss, grads = grads_fn(params, batch)`) and never reads
        them: nothing applies them, whatever the helper that computed them is called."""
        semantic = None
        for stmt, bound in facts.grads_bound.items():
            name = bound.name
            if name.startswith("_") or _returns_what_it_takes(stmt):
                continue  # `params, loss, grads = update(params, batch)`: the step applied them itself
            semantic = semantic or ctx.source.semantic
            scope = semantic.function_of(stmt) or ctx.source.tree
            if read_in(scope, name) or _closed_over(scope, name):
                continue
            yield ctx.report(stmt, f"`{name}` gets the gradients at every step and is never read: nothing applies them, "
                             "so the parameters never change.", data={"lost": [name]})

    @staticmethod
    def nnx_under_jax_jit(ctx):
        """`@jax.jit` on a step that takes NNX gradients and updates in place (`optimizer.update(model, grads)`):
        `jax.jit` traces copies of the NNX objects, so the update changes the copies (`nnx.jit` carries it back)."""
        names = ctx.names
        for fn in ctx.source.nodes(ast.FunctionDef):
            if not any(names.qualname(d) == JAX_JIT for d in fn.decorator_list):
                continue
            calls = [n for n in walk_local(fn) if isinstance(n, ast.Call)]
            if not any(isinstance(c.func, ast.Call) and names.qualname(c.func.func) in NNX_GRADS for c in calls):
                continue
            for call in calls:
                if isinstance(call.func, ast.Attribute) and call.func.attr == "update" and len(call.args) == 2 and (
                        not call.keywords):
                    yield ctx.report(
                        call,
                        f"`jax.jit` gives `{fn.name}` copies of the NNX objects: `{ast.unparse(call.func)}(...)` never "
                        "changes the real parameters (use `nnx.jit`).",
                        data={"lost": [ast.unparse(call.args[0])]},
                    )
