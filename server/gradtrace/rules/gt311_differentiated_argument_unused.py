"""GT311: jax.grad differentiates an argument the function's output never uses."""

from __future__ import annotations

import ast

from gradtrace.analysis.core.values import covered, flat
from gradtrace.rules.base import Invalid, Rule, Truth

GRADIENT_MODES = frozenset({"grad", "value_and_grad"})
MAX_DEPTH = 4


class DifferentiatedArgumentUnused(Rule):
    code = "GT311"
    name = "differentiated-argument-unused"
    summary = "jax.grad differentiates an argument the function's output never uses: its gradient is all zero."
    severity = "warning"
    framework = "jax"
    docs = """
    ## What it does
    Flags the `return` of a function differentiated by `jax.grad`/`value_and_grad` (or equinox's and
    flax.nnx's filtered versions) when a differentiated argument never reaches what it returns: the
    function does not read the argument at all (it reads a global model of the same kind instead), or
    reads it only into names nothing reads afterwards (`pred = apply_fn(params, x)` and then a loss
    computed from the targets alone). Both must hold: the value flow finds no path from the argument
    to the output, and no read of the argument feeds anything else. Arguments named `_...` or deleted
    with `del` are meant to be unused, and lambdas and functions that return a literal (a stub, a test
    of the transform) are left alone. When the function reads a value its
    enclosing function computed by a call (`fake = apply_fn(state.params, z)` before `def loss(params)`),
    the finding points at that line: the forward pass ran outside the differentiated function.
    Also one array of a differentiated dict (`params["temperature"]`) the output never reads while it reads
    others of the same dict: reported where the array is made (the dict entry of `init_params`).

    ## Why is this bad?
    JAX does not complain: the gradient with respect to that argument is all zeros, so an optimizer
    leaves the parameters where they started while the loss looks perfectly computed.

    ## Example
    ```python
    def loss(params, x, y):
        pred = apply_fn(params, x)
        return jnp.mean((y - y.mean()) ** 2)
    ```

    ## Use instead
    ```python
    def loss(params, x, y):
        pred = apply_fn(params, x)
        return jnp.mean((pred - y) ** 2)
    ```

    ## Fix safety
    No automatic fix: which value the output should use is the author's call.
    """
    valid = (
        """
        import jax
        import jax.numpy as jnp

        def probe(x):
            assert x.shape == (5,)
            return 0.0

        g = jax.grad(probe)(jnp.zeros(5))
        """,
        """
        import jax
        import jax.numpy as jnp

        def loss(params, x, y):
            pred = x @ params["w"] + params["b"]
            return jnp.mean((pred - y) ** 2)

        g = jax.grad(loss)({"w": jnp.ones((3, 1)), "b": jnp.zeros(1)}, jnp.ones((4, 3)), jnp.zeros((4, 1)))
        """,
        """
        import jax
        import jax.numpy as jnp

        def penalty(_params, scale):
            return scale * 0.0

        def objective(params, key):
            del key
            return jnp.sum(params ** 2)

        g = jax.grad(objective)(jnp.ones(3), jax.random.PRNGKey(0))
        h = jax.grad(penalty, argnums=1)(jnp.ones(3), 2.0)
        """,
        """
        import jax
        import jax.numpy as jnp

        def energy(w, xs):
            step = jax.vmap(lambda x: jnp.dot(w, x))
            return jnp.sum(step(xs))

        g = jax.grad(energy)(jnp.ones(3), jnp.ones((5, 3)))
        """,
    )
    invalid = (
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def train_step(params, x):
                scores = jnp.tanh(x @ params)  # expect: GT311

                def loss(p):
                    return -jnp.mean(jnp.log(jax.nn.sigmoid(scores)))

                return jax.grad(loss)(params)

            g = train_step(jnp.ones(3), jnp.ones((4, 3)))
            """,
            truth=Truth(grads={"g": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def predict(params, x):
                return jnp.tanh(x @ params["w"])

            def loss(params, x, y):
                pred = predict(params, x)
                return jnp.mean((y - jnp.mean(y)) ** 2)  # expect: GT311

            g = jax.grad(loss)({"w": jnp.ones((3, 1))}, jnp.ones((4, 3)), jnp.arange(4.0)[:, None])
            """,
            truth=Truth(grads={"g['w']": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            class Linear:
                def __init__(self, w):
                    self.w = w

                def __call__(self, x):
                    return x @ self.w

            model = Linear(jnp.ones(3))

            def fit(weights, xs):
                preds = jax.vmap(model)(xs)
                return jnp.mean(preds ** 2)  # expect: GT311

            value, g = jax.value_and_grad(fit)(jnp.full(3, 0.5), jnp.ones((4, 3)))
            """,
            truth=Truth(grads={"g": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp


            def init_params():
                return {
                    "W": jnp.full((4, 3), 0.1),
                    "b": jnp.zeros(3),
                    "temperature": jnp.array(1.0),  # expect: GT311
                }


            def loss_fn(params, x):
                logits = x @ params["W"] + params["b"]
                return -jnp.mean(jax.nn.log_softmax(logits)[:, 0])


            params = init_params()
            loss, g = jax.value_and_grad(loss_fn)(params, jnp.ones((5, 4)))
            """,
            truth=Truth(grads={"g['temperature']": "zero"}, framework="jax"),
        ),
    )

    def check(self, ctx):
        facts = ctx.jax
        for node, leaf in facts.unread_leaves.items():
            if reads_key(leaf.function, leaf.key, ctx.jax.plugin.interp.root.functions):
                continue  # the value flow lost a read the text shows (a callback of a library it does not follow)
            yield ctx.report(
                node,
                f"`{getattr(leaf.function, 'name', 'the function')}` never reads `{leaf.path}`, so "
                f"`jax.{leaf.transform.mode}` gives it an all-zero gradient: it never trains.",
                data={"lost": [leaf.path]},
            )
        semantic = ctx.source.semantic
        outputs: dict = {}  # (function node, argument) -> [does the output reach it, per call]
        functions: dict = {}
        for call in facts.grad_calls:
            gf = call.transform
            ref = facts.function_of(gf)
            if gf.mode not in GRADIENT_MODES or call.result is None or ref is None or not isinstance(
                    ref.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            target = flat(call.result.item(0) or call.result) if gf.has_aux and call.result.items else flat(
                call.result)
            params = ref.params()
            for index in gf.argnums if gf.argnums is not None else (0,):
                position = index + len(ref.bound)
                if position >= len(params):
                    continue
                name = params[position]
                reached = any(covered(name, frozenset({s})) or covered(s, frozenset({name})) for s in target.srcs) \
                    or any(covered(name, c.lost) for c in target.cuts)
                outputs.setdefault((ref.node, name), []).append(reached)
                functions[(ref.node, name)] = gf
        for (fn, name), reached in outputs.items():
            if any(reached) or name.startswith("_") or not unused(fn, name, semantic):
                continue
            returns = [n for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None
                       and semantic.function_of(n) is fn]
            if not returns or all(isinstance(r.value, ast.Constant) for r in returns):
                continue  # `return 0.`: a stub or a test of the transform, not a loss
            gf = functions[(fn, name)]
            outside = computed_outside(fn, semantic)
            if outside is not None:  # the forward pass the output reads ran before, outside the function
                yield ctx.report(
                    outside.statement,
                    f"`{fn.name}` reads `{outside.name}`, computed here outside it, not `{name}`: `{name}` gets a "
                    f"zero gradient.",
                    data={"lost": [name]},
                )
                continue
            yield ctx.report(
                returns[-1],
                f"`{fn.name}` returns a value that never uses `{name}`, so `jax.{gf.mode}` gives it an all-zero "
                f"gradient.",
                data={"lost": [name]},
            )


def computed_outside(fn: ast.AST, semantic):
    """The first value `fn` reads from an enclosing function that was computed there by a call."""
    for node in ast.walk(fn):
        if not isinstance(node, ast.Name) or not isinstance(node.ctx, ast.Load):
            continue
        binding = semantic.binding_of(node)
        if binding is not None and binding.kind == "assignment" and isinstance(binding.value, ast.Call) and \
                binding.scope.kind == "function" and binding.scope.node is not fn:
            return binding
    return None


def unused(fn: ast.AST, name: str, semantic) -> bool:
    """Does nothing `fn` computes from its parameter `name` reach anything that is read?"""
    binding = next((b for b in semantic.made_by(fn) if b.name == name and b.kind == "parameter"), None)
    if binding is None:
        return False
    if any(isinstance(n, ast.Delete) and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)
           for n in ast.walk(fn)):
        return False  # `del key`: unused on purpose
    return all(dead(use, fn, semantic, 0) for use in semantic.uses_of(binding))


def dead(use: ast.Name, fn: ast.AST, semantic, depth: int) -> bool:
    """Is this read only stored into names that nothing reads (in `fn` itself, not a closure)?"""
    if depth > MAX_DEPTH or semantic.function_of(use) is not fn:
        return False
    statement = semantic.statement_of(use)
    if not isinstance(statement, ast.Assign) or not all(isinstance(t, (ast.Name, ast.Tuple, ast.List))
                                                       for t in statement.targets):
        return False
    made = semantic.made_by(statement)
    return bool(made) and all(dead(u, fn, semantic, depth + 1) for b in made for u in semantic.uses_of(b))


def reads_key(fn: ast.AST, key: str, functions: dict, limit: int = 50) -> bool:
    """Does the text of `fn`, or of a function of the file it calls (by name, transitively), read `key`
    (`p["key"]`, `p.get("key")`, `p.key`)?"""
    todo, seen = [fn], set()
    while todo and len(seen) < limit:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for n in ast.walk(node):
            if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant) and n.slice.value == key:
                return True
            if isinstance(n, ast.Attribute) and n.attr == key:
                return True
            if isinstance(n, ast.Call):
                if isinstance(n.func, ast.Attribute) and n.func.attr == "get" and n.args and \
                        isinstance(n.args[0], ast.Constant) and n.args[0].value == key:
                    return True
                callee = functions.get(n.func.id) if isinstance(n.func, ast.Name) else None
                if callee is not None:
                    todo.append(callee)
    return False
