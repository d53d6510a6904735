"""GT309: jnp.where masks a branch whose gradient is infinite at the masked points (NaN gradients)."""

from __future__ import annotations

import ast

from gradtrace.analysis.jax_flow import jax_facts
from gradtrace.analysis.where_guard import guards_singular_point, resolve_condition
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
    `arcsin`/`arccos`/`arctanh`, a division by `x` or a power `x ** p` with `p < 1` not an integer, and
    `x` depends on differentiated parameters without being made safe first (`jnp.where`, `jnp.maximum`,
    `jnp.clip`). It is a warning when the condition guards exactly the point where `f`'s derivative is
    infinite: it compares that same `x` with 0 or an epsilon so that `f(x)` is masked out at `x == 0`
    (`x > 0`, `x != 0`, `0 < x`, `x >= eps`, or `x == 0`/`x <= 0` with `f(x)` in the second branch).
    The guard is there because `x` does reach 0, and exactly there the gradient is NaN. Other shapes
    (`x > 1`, `jnp.log(x + 1)`, an arcsin) stay information.

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
        """
        import jax
        import jax.numpy as jnp

        counts = jnp.array([0.0, 2.0])

        def f(w):
            log_counts = jnp.where(counts > 0, jnp.log(counts), 0.0)
            return jnp.sum(log_counts * w)

        g = jax.grad(f)(jnp.ones(2))
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
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def loss(params, z):
                z = z * params["scale"]
                sq = jnp.sum((z[:, None] - z[None, :]) ** 2, axis=-1)
                dist = jnp.where(sq > 0, jnp.sqrt(sq), 0.0)  # expect: GT309
                return jnp.sum(dist)

            g = jax.grad(loss)({"scale": jnp.ones(2)}, jnp.array([[0.0, 1.0], [1.0, 0.0]]))
            not_all_nan = (~jnp.isnan(g["scale"])).sum()
            """,
            truth=Truth(grads={"not_all_nan": "zero"}, framework="jax"),
        ),
    )

    def check(self, ctx):
        facts = jax_facts(ctx)
        parents = ctx.source.parents
        for node, (op, where, arg, first, origins) in facts.nan_where.items():
            what = "division by" if op == "division" else f"power `{op}` of" if op.startswith("**") else f"`{op}` of"
            cond = resolve_condition(where.args[0], where, parents)
            if guards_singular_point(cond, arg, first):
                x = short(arg)
                safe = f"jnp.where({short(cond)}, {x}, 1.0)" if first else f"jnp.where({short(cond)}, 1.0, {x})"
                lost = ", ".join(f"`{o}`" for o in sorted(origins)[:3])
                yield ctx.report(
                    node,
                    f"`jnp.where({short(where.args[0])}, ...)` on line {where.lineno} masks the {what} `{x}` "
                    f"exactly where `{x}` is 0, but reverse mode still differentiates the masked branch: there its "
                    f"derivative is infinite and 0 * inf = NaN, so the gradient of {lost} gets NaN entries as soon "
                    f"as `{x}` has a zero. Make the argument safe too (double where): `{safe}`.",
                    severity="warning",
                    data={"op": op},
                )
                continue
            yield ctx.report(
                node,
                f"`jnp.where` on line {where.lineno} still differentiates this {what} `{short(arg)}` where it is "
                f"masked out, and an infinite derivative there times zero gives NaN gradients; make its argument "
                f"safe with an inner `jnp.where` first.",
                data={"op": op},
            )


def short(node, limit=40) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."
