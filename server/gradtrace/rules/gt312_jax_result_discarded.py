"""GT312: the result of a JAX array operation thrown away."""

from __future__ import annotations

import ast

from gradtrace.rules.base import Invalid, Rule, Truth

# `jax.lax` loops: they run for the state they return (a `cond` or `switch` left unbound is often written to check
# that its branches trace, which it does)
LAX_PURE = frozenset({"fori_loop", "scan", "while_loop", "associative_scan"})
# `x.at[i].<op>(v)`: a new array with the update applied
AT_METHODS = frozenset({"set", "add", "subtract", "multiply", "divide", "power", "min", "max", "apply", "get"})
# what a loop body may call for its side effects alone
SIDE_EFFECTS = ("jax.debug.", "jax.experimental.io_callback", "jax.experimental.host_callback", "print")


def _side_effects(ctx, call: ast.Call) -> bool:
    """Does a function handed to the call print or call back to the host (kept for that alone)?"""
    for arg in [*call.args, *(k.value for k in call.keywords)]:
        fn = arg if isinstance(arg, ast.Lambda) else None
        if isinstance(arg, ast.Name):
            binding = ctx.source.semantic.sole_binding(arg)
            fn = binding.statement if binding is not None and isinstance(
                binding.statement, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
        for node in ast.walk(fn) if fn is not None else ():
            if isinstance(node, (ast.Nonlocal, ast.Global)):
                return True  # changes Python state as it traces
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                    "append", "extend", "update", "add") and not isinstance(node.func.value, ast.Subscript):
                return True  # (`x.at[i].add(v)` is an update like any other)
            if isinstance(node, ast.Call):
                name = ctx.names.qualname(node.func) or (node.func.id if isinstance(node.func, ast.Name) else "")
                if name.startswith(SIDE_EFFECTS):
                    return True
    return False


class JaxResultDiscarded(Rule):
    code = "GT312"
    name = "jax-result-discarded"
    summary = "A JAX operation's result is thrown away: JAX never changes arrays in place, so the line does nothing."
    severity = "warning"
    framework = "jax"
    docs = """
    ## What it does
    Flags a statement that calls `jax.lax.fori_loop` / `scan` / `while_loop`, or applies a functional
    update `x.at[i].set(v)` (`add`, `multiply`...), and uses nothing it returns. A loop whose body prints,
    calls back to the host (`jax.debug.print`, `io_callback`) or changes Python state as it traces
    (`nonlocal`, a list it appends to) stays quiet: it may run for that.

    ## Why is this bad?
    JAX arrays are immutable and these functions are pure: the loop's final state and the updated
    array are only in the return value. Thrown away, the line changes nothing: the arrays the rest of
    the function reads keep their old values, and what should have flowed through the loop (parameters
    into a rollout, a prediction into a buffer) gets a zero gradient.

    ## Example
    ```python
    jax.lax.fori_loop(0, n, step, (outs, x))
    return jnp.mean((outs - target) ** 2)
    ```

    ## Use instead
    ```python
    outs, x = jax.lax.fori_loop(0, n, step, (outs, x))
    return jnp.mean((outs - target) ** 2)
    ```

    ## Fix safety
    No automatic fix: bind the result to the names the rest of the code reads.
    """
    valid = (
        """
        import jax
        import jax.numpy as jnp


        def rollout(w, x):
            def step(t, carry):
                return carry.at[t].set(w * x[t])

            out = jax.lax.fori_loop(0, 3, step, jnp.zeros(3))
            return jnp.sum(out ** 2)


        g = jax.grad(rollout)(2.0, jnp.ones(3))
        """,
        """
        import jax
        import jax.numpy as jnp


        def show(i, x):
            jax.debug.print("step {i}", i=i)
            return x


        jax.lax.fori_loop(0, 2, show, jnp.zeros(2))
        """,
    )
    invalid = (
        Invalid(
            """
            import jax
            import jax.numpy as jnp


            def rollout(w, x):
                out = jnp.zeros(3)

                def step(t, carry):
                    return carry.at[t].set(w * x[t])

                jax.lax.fori_loop(0, 3, step, out)  # expect: GT312
                return jnp.sum(out ** 2)


            g = jax.grad(rollout)(2.0, jnp.ones(3))
            """,
            truth=Truth(grads={"g": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp


            def loss(w):
                y = jnp.zeros(2)
                y.at[0].set(w)  # expect: GT312
                return jnp.sum(y ** 2) + 0.0 * w


            g = jax.grad(loss)(1.5)
            """,
            truth=Truth(grads={"g": "zero"}, framework="jax"),
        ),
    )

    def check(self, ctx):
        if "jax" not in ctx.source.text:
            return
        for stmt in ctx.source.nodes(ast.Expr):
            call = stmt.value
            if not isinstance(call, ast.Call):
                continue
            func = call.func
            qn = ctx.names.qualname(func) or ""
            if qn.startswith("jax.lax.") and qn.rsplit(".", 1)[-1] in LAX_PURE:
                if _side_effects(ctx, call):
                    continue
                what = f"`{ctx.source.segment(func)}(...)` returns the loop's result"
                yield ctx.report(stmt, f"{what}, which is thrown away here: this line changes nothing.")
            elif isinstance(func, ast.Attribute) and func.attr in AT_METHODS and isinstance(func.value, ast.Subscript) \
                    and isinstance(func.value.value, ast.Attribute) and func.value.value.attr == "at":
                array = ctx.source.segment(func.value.value.value)
                yield ctx.report(stmt, f"`.at[...].{func.attr}(...)` returns a new array and `{array}` stays as it was: "
                                       "the result is thrown away here.")
