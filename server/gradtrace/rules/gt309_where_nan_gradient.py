"""GT309: jnp.where masks a branch whose gradient is infinite at the masked points (NaN gradients)."""

from __future__ import annotations

from gradtrace.analysis.jax_flow import jax_facts
from gradtrace.rules.base import Invalid, Rule, Truth


class WhereNanGradient(Rule):
    code = "GT309"
    name = "where-nan-gradient"
    summary = "jnp.where hides a log/sqrt/division of a differentiated value: its gradient can be NaN."
    severity = "information"
    framework = "jax"
    docs = """
    ## What it does
    Reports `jnp.where(cond, f(x), y)` inside a differentiated function when `f` is `jnp.log`, `jnp.sqrt`,
    `arcsin`/`arccos`/`arctanh` or a division by `x`, and `x` depends on differentiated parameters
    without being made safe first (`jnp.where`, `jnp.maximum`, `jnp.clip`).

    ## Why is this bad?
    `where` selects values, but reverse mode still differentiates both branches and multiplies the
    unselected one by zero: where `f'(x)` is infinite (`log` or `sqrt` at 0, division by 0) that gives
    `inf * 0 = NaN`, and the NaN spreads to the parameters.

    ## Example
    ```python
    y = jnp.where(x > 0, jnp.log(x), 0.0)
    ```

    ## Use instead
    ```python
    safe = jnp.where(x > 0, x, 1.0)
    y = jnp.where(x > 0, jnp.log(safe), 0.0)
    ```

    ## Fix safety
    No automatic fix: the safe placeholder value depends on the function.
    """
    valid = (
        """
        import jax
        import jax.numpy as jnp

        def f(x):
            safe = jnp.where(x > 0, x, 1.0)
            return jnp.sum(jnp.where(x > 0, jnp.log(safe), 0.0))

        g = jax.grad(f)(jnp.array([0.0, 1.0]))
        """,
    )
    invalid = (
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def f(x):
                return jnp.sum(jnp.where(x > 0, jnp.sqrt(x), 0.0))  # expect: GT309

            g = jax.grad(f)(jnp.array([0.0, 1.0]))
            nan_count = jnp.isnan(g).sum() - 1
            """,
            truth=Truth(grads={"nan_count": "zero"}, framework="jax"),
        ),
    )

    def check(self, ctx):
        facts = jax_facts(ctx)
        for node, (op, where) in facts.nan_where.items():
            yield ctx.report(
                node,
                f"`jnp.where` on line {where.lineno} still differentiates this `{op}` where it is masked out, and its "
                f"infinite derivative there times zero gives NaN gradients; make its argument safe with an inner "
                f"`jnp.where` first.",
                data={"op": op},
            )
