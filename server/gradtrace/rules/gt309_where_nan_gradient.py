"""GT309: jnp.where masks a branch whose gradient is infinite at the masked points (NaN gradients)."""

from __future__ import annotations

import ast

from gradtrace.analysis.where_guard import (
    masks_negatives,
    nan_certain,
    non_negative,
    resolve_condition,
    singular_kind,
)
from gradtrace.rules._messages import join_phrases
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
    `jnp.clip`), or a division whose numerator is differentiated (`summed / count`: the derivative
    `1 / count` is infinite at `count == 0` too). It is a warning only where running it gives NaN: the
    condition guards exactly the point where `f`'s derivative is infinite (it compares that same `x`
    with 0 or an epsilon so that `f(x)` is masked out at `x == 0`: `x > 0`, `x != 0`, `0 < x`,
    `x >= eps`, or `x == 0`/`x <= 0` with `f(x)` in the second branch), and either `f` is a square
    root or fractional power masked at the negatives of an `x` that can be negative (its derivative
    is NaN at every negative value; any threshold >= 0 masks all of them: `x >= 1`), or `x` can be *exactly* 0: a count or sum of a mask, a product
    with a mask, literal zero data, a pairwise difference `z[:, None] - z[None, :]` (its diagonal),
    or a norm, power or sum of those. A log or a division masked at the negatives of a continuous
    value (`jnp.where(slack > 0, -jnp.log(slack), 1e3)`) has a finite derivative there (`1 / x`), so
    it stays information, like the other shapes (`x > 1`, `jnp.log(x + 1)`, an arcsin).

    ## Why is this bad?
    `where` selects values, but reverse mode still differentiates both branches and multiplies the
    unselected one by zero: where `f'(x)` is infinite (`log` or `sqrt` at 0, division by 0) that gives
    `inf * 0 = NaN`, and the NaN spreads to the parameters.
    Make the argument safe too (a "double where"): replace it by a harmless value where the
    condition is false, as below.

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

        def pool(params, x, mask):
            h = jnp.tanh(x @ params["w"])
            summed = jnp.sum(h * mask[..., None], axis=1)
            count = jnp.sum(mask, axis=1, keepdims=True)
            return summed / jnp.maximum(count, 1.0)

        g = jax.grad(lambda p: jnp.sum(pool(p, jnp.ones((2, 2, 3)), jnp.array([[1.0, 1.0], [0.0, 0.0]]))))(
            {"w": jnp.ones((3, 2))})
        """,
        """
        import jax
        import jax.numpy as jnp

        def pool(params, x, mask):
            h = jnp.tanh(x @ params["w"])
            summed = jnp.sum(h * mask[..., None], axis=1)
            count = jnp.sum(mask, axis=1, keepdims=True)
            safe = jnp.where(count > 0, count, 1.0)
            return jnp.where(count > 0, summed / safe, 0.0)

        g = jax.grad(lambda p: jnp.sum(pool(p, jnp.ones((2, 2, 3)), jnp.array([[1.0, 1.0], [0.0, 0.0]]))))(
            {"w": jnp.ones((3, 2))})
        """,
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

            def pool(params, x, mask):
                h = jnp.tanh(x @ params["w"])
                summed = jnp.sum(h * mask[..., None], axis=1)
                count = jnp.sum(mask, axis=1, keepdims=True)
                return jnp.where(count > 0, summed / count, 0.0)  # expect: GT309

            def loss(params, x, mask):
                return jnp.sum(pool(params, x, mask))

            mask = jnp.array([[1.0, 1.0], [0.0, 0.0]])
            g = jax.grad(loss)({"w": jnp.ones((3, 2))}, jnp.ones((2, 2, 3)), mask)
            not_all_nan = (~jnp.isnan(g["w"])).sum()
            """,
            truth=Truth(grads={"not_all_nan": "zero"}, framework="jax"),
        ),
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
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def soft_clip(params, r):
                scaled = r * params["gain"]
                return jnp.sum(jnp.where(scaled >= 1.0, jnp.sqrt(scaled), scaled))  # expect: GT309

            g = jax.grad(soft_clip)({"gain": jnp.ones(2)}, jnp.array([-0.5, 4.0]))
            nan_count = jnp.isnan(g["gain"]).sum() - 1
            """,
            truth=Truth(grads={"nan_count": "zero"}, framework="jax"),
        ),
    )

    def check(self, ctx):
        if not ctx.jax.nan_where:
            return
        semantic = ctx.source.semantic
        for node, found in ctx.jax.nan_where.items():
            op, where, arg, first, origins = found.op, found.where, found.argument, found.first, found.origins
            what = "division by" if op == "division" else f"power `{op}` of" if op.startswith("**") else f"`{op}` of"
            cond = resolve_condition(where.args[0], semantic)
            if nan_certain(op, cond, arg, first, semantic, ctx.names):
                x = short(arg)
                lost = join_phrases([f"`{o}`" for o in sorted(origins)])
                negative = singular_kind(op) == "root" and masks_negatives(cond, arg, first) and not non_negative(
                    arg, semantic, ctx.names)
                reach = f"once `{x}` <= 0" if negative else f"once `{x}` has a zero"
                yield ctx.report(
                    node,
                    f"`jnp.where({short(where.args[0])}, ...)` on line {where.lineno} masks the {what} `{x}`: "
                    f"{lost} {'gets' if len(origins) == 1 else 'get'} a NaN gradient {reach}.",
                    severity="warning",
                    data={"op": op},
                )
                continue
            if not found.direct:
                continue  # only the numerator is differentiated: NaN needs a zero denominator
            yield ctx.report(
                node,
                f"`jnp.where` on line {where.lineno} masks this {what} `{short(arg)}`, but its gradient there may be "
                "NaN.",
                data={"op": op},
            )


def short(node, limit=40) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."
