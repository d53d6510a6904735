"""GT308: reverse-mode differentiation through lax.while_loop / a dynamic fori_loop."""

from __future__ import annotations

from gradtrace.rules.base import Invalid, Rule, Truth


class ReverseModeWhileLoop(Rule):
    code = "GT308"
    name = "reverse-mode-while-loop"
    summary = "jax.grad through lax.while_loop (or fori_loop with traced bounds) raises ValueError."
    severity = "error"
    framework = "jax"
    docs = """
    ## What it does
    Flags `jax.lax.while_loop`, and `jax.lax.fori_loop` whose bounds are not static, inside a function
    differentiated in reverse mode (`grad`, `value_and_grad`, `jacrev`, `vjp`) when the loop carries or
    reads a differentiated value.

    ## Why is this bad?
    JAX raises `ValueError: Reverse-mode differentiation does not work for lax.while_loop or
    lax.fori_loop with dynamic start/stop values`.

    ## Example
    ```python
    def power(x, n):
        return jax.lax.while_loop(lambda c: c[0] < n, lambda c: (c[0] + 1, c[1] * x), (0, 1.0))[1]
    jax.grad(power)(2.0, 3)
    ```

    ## Use instead
    ```python
    def power(x, n):
        return jax.lax.fori_loop(0, 3, lambda i, acc: acc * x, 1.0)   # static bounds
    ```
    Or `jax.lax.scan` with a fixed length, or forward mode (`jax.jacfwd`).

    ## Fix safety
    No automatic fix: the loop bound must become static.
    """
    valid = (
        """
        import jax
        from jax import lax

        def grow(x):
            return lax.fori_loop(x, x + 2.0, lambda i, c: c + x * i, x)

        g = jax.grad(grow)(1.0)
        """,
        """
        import jax

        def power(x):
            return jax.lax.fori_loop(0, 3, lambda i, acc: acc * x, 1.0)

        g = jax.grad(power)(2.0)
        """,
    )
    invalid = (
        Invalid(
            """
            import jax

            def power(x, n):
                body = lambda c: (c[0] + 1, c[1] * x)
                return jax.lax.while_loop(lambda c: c[0] < n, body, (0, 1.0))[1]  # expect: GT308

            g = jax.grad(power)(2.0, 3)
            """,
            truth=Truth(raises=("ValueError", "Reverse-mode differentiation does not work"), framework="jax"),
        ),
    )

    def check(self, ctx):
        for node, found in ctx.jax.while_loops.items():
            op = found.op
            yield ctx.report(
                node,
                f"`lax.{op}` carries a value differentiated in reverse mode: this raises ValueError.",
            )
