"""GT302: jax.grad differentiates an integer input (a literal or an int leaf of the params pytree)."""

from __future__ import annotations

import ast

from gradtrace.analysis.tfjax_fixes import float_literal_fix
from gradtrace.rules.base import Invalid, Rule, Truth


class GradOfIntegerInput(Rule):
    code = "GT302"
    name = "grad-of-integer-input"
    summary = "jax.grad differentiates an integer input: it raises TypeError."
    severity = "error"
    framework = "jax"
    docs = """
    ## What it does
    Follows the arguments a `jax.grad`/`value_and_grad`/`vjp` call differentiates (by `argnums`) back
    to where they were built — across assignments, helper functions and pytrees — and flags integer
    leaves: `jax.grad(f)(3)`, `jnp.array([[1, 0], [0, 1]])` or `jnp.arange(4)` in a params dict.
    Integer token ids or lengths passed as non-differentiated arguments stay quiet.

    ## Why is this bad?
    JAX raises `TypeError: grad requires real- or complex-valued inputs (input dtype that is a
    sub-dtype of np.inexact), but got int32`. Weights initialised from integer literals are the usual
    cause.

    ## Example
    ```python
    params = {"W": jnp.array([[1, 0], [0, 1]]), "b": jnp.zeros(2)}
    grads = jax.grad(loss_fn)(params, x)
    ```

    ## Use instead
    ```python
    params = {"W": jnp.array([[1.0, 0.0], [0.0, 1.0]]), "b": jnp.zeros(2)}
    ```

    ## Fix safety
    The fix turns the integer literals into float literals (`3` → `3.0`). It is safe: differentiation
    requires a floating dtype, and the values are unchanged.
    """
    valid = (
        """
        import jax
        import jax.numpy as jnp

        def take(x, i):
            return x[i]

        y, pullback = jax.vjp(take, jnp.ones(3), 2)
        dx, di = pullback(jnp.ones(()))
        """,
        """
        import equinox as eqx
        import jax.numpy as jnp

        @eqx.filter_grad
        def f(pair):
            x, n = pair
            return jnp.sum(x ** 2) * n

        g = f((jnp.ones(3), 5))
        """,
        """
        import jax
        import jax.numpy as jnp

        xs = jnp.arange(6.0).reshape((3, 2))
        c = jnp.array(1, dtype=xs.dtype)
        out, pullback = jax.vjp(lambda c, xs: c * xs, c, xs)
        dc, dxs = pullback(jnp.ones_like(xs))
        """,
        """
        import jax
        import jax.numpy as jnp

        def loss(params, token_ids):
            return jnp.sum(params["table"][token_ids])

        params = {"table": jnp.ones((10, 4))}
        g = jax.grad(loss)(params, jnp.array([1, 2, 3]))
        """,
        """
        import jax

        g = jax.grad(lambda x: x ** 2)(3.0)
        """,
        """
        import jax
        import jax.numpy as jnp

        target = jnp.array([[3]], jnp.float32)
        g = jax.grad(lambda t: jnp.sum(t ** 2))(target)
        """,
    )
    invalid = (
        Invalid(
            """
            import jax

            def f(x):
                return x ** 2

            g = jax.grad(f)(3)  # expect: GT302
            """,
            fixed="""
            import jax

            def f(x):
                return x ** 2

            g = jax.grad(f)(3.0)  # expect: GT302
            """,
            truth=Truth(raises=("TypeError", "grad requires real- or complex-valued inputs"), framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def init():
                return {
                    "W": jnp.array([[1, 0], [0, 1]]),  # expect: GT302
                    "b": jnp.zeros(2),
                }

            def loss(params, x):
                return jnp.sum(jnp.tanh(x @ params["W"] + params["b"]))

            grads = jax.grad(loss)(init(), jnp.ones((3, 2)))
            """,
            fixed="""
            import jax
            import jax.numpy as jnp

            def init():
                return {
                    "W": jnp.array([[1.0, 0.0], [0.0, 1.0]]),  # expect: GT302
                    "b": jnp.zeros(2),
                }

            def loss(params, x):
                return jnp.sum(jnp.tanh(x @ params["W"] + params["b"]))

            grads = jax.grad(loss)(init(), jnp.ones((3, 2)))
            """,
            truth=Truth(raises=("TypeError", "grad requires real- or complex-valued inputs"), framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def init_params(n_in, n_out):
                w = jnp.full((n_in, n_out), 0.1)
                b = jnp.array([0] * n_out)  # expect: GT302
                return w, b

            def loss(params, x):
                w, b = params
                return jnp.mean((x @ w + b) ** 2)

            grads = jax.grad(loss)(init_params(3, 2), jnp.ones((4, 3)))
            """,
            truth=Truth(raises=("TypeError", "grad requires real- or complex-valued inputs"), framework="jax"),
        ),
    )

    def check(self, ctx):
        for node, found in ctx.jax.int_args.items():
            path, gf, call_node = found.path, found.transform, found.call
            literal = None
            if isinstance(node, (ast.Constant, ast.UnaryOp)):
                literal = node
            elif isinstance(node, ast.Call) and node.args and not any(k.arg == "dtype" for k in node.keywords):
                literal = node.args[0]
            fix = float_literal_fix(ctx, literal, f"`{path}`") if literal is not None else None
            yield ctx.report(
                node,
                f"`{path}` is an integer input to `jax.{gf.mode}` on line {call_node.lineno}: it raises TypeError.",
                fix=fix,
                data={"lost": [path]},
            )
