"""GT305: in-place item assignment on a JAX array."""

from __future__ import annotations

from gradtrace.analysis.tfjax_fixes import at_update_fix
from gradtrace.rules.base import Invalid, Rule, Truth


class JaxInplaceUpdate(Rule):
    code = "GT305"
    name = "jax-inplace-update"
    summary = "Item assignment on a JAX array raises TypeError: JAX arrays are immutable."
    severity = "error"
    framework = "jax"
    docs = """
    ## What it does
    Flags `x[i] = v` and `x[i] += v` when `x` is a JAX array (built by `jnp`/`jax.random`/`jax.nn`,
    computed from one, or traced inside `grad`/`jit`). Item assignment on NumPy arrays, lists, dicts
    (a params pytree, a metrics dict even after `lax.pmean`/`psum`) and values of unknown type stays
    quiet.

    ## Why is this bad?
    JAX arrays are immutable: this raises `TypeError: JAX arrays are immutable and do not support
    in-place item assignment`.

    ## Example
    ```python
    x = jnp.zeros(3)
    x[1] = 2.0
    ```

    ## Use instead
    ```python
    x = jnp.zeros(3)
    x = x.at[1].set(2.0)
    ```

    ## Fix safety
    The fix rewrites the statement to `x = x.at[i].set(v)` (`+=` → `.add`, `-=` → `.subtract`, `*=` →
    `.multiply`, `/=` → `.divide`, `**=` → `.power`). It is safe: it computes the value the assignment
    meant, as a new array bound to the same name.
    """
    valid = (
        """
        import jax.numpy as jnp
        import numpy as np

        labels = np.random.uniform(1, 10, size=(4, 5)).astype(np.int32)
        for t in range(1, labels.shape[1]):
            labels[0, t] = labels[0, t - 1] + 1
        one_hot = jnp.eye(10)[labels % 10]
        """,
        """
        import jax
        import jax.numpy as jnp

        def loss_fn(w, x):
            pred = x @ w
            metrics = {"pred_norm": jnp.linalg.norm(pred)}
            return jnp.mean(pred ** 2), jax.tree_util.tree_map(jnp.mean, metrics)

        w = jnp.ones(3)
        (loss, metrics), g = jax.value_and_grad(loss_fn, has_aux=True)(w, jnp.ones((2, 3)))
        metrics["l2_grads"] = jnp.sqrt(jnp.vdot(g, g))
        """,
        """
        import jax.numpy as jnp
        import numpy as np

        buf = np.zeros(3)
        buf[1] = 2.0
        params = {"w": jnp.ones(3)}
        params["w"] = params["w"] * 2.0
        x = jnp.zeros(3).at[1].set(2.0)
        """,
        """
        import jax
        import jax.numpy as jnp

        def summary(x):
            stats = {"mean": jnp.mean(x)}
            return jax.lax.pmean(stats, axis_name="i")

        def step(x):
            stats = summary(x)
            stats["step"] = jnp.ones(())
            return stats

        out = jax.vmap(step, axis_name="i")(jnp.ones((2, 3)))
        """,
        """
        import jax.numpy as jnp

        parts = jnp.split(jnp.arange(6.0), 3)
        parts[0] = parts[0] * 2.0
        """,
    )
    invalid = (
        Invalid(
            """
            import jax.numpy as jnp

            def update(x, i):
                x[i] = 0.0  # expect: GT305
                return x

            y = update(jnp.ones(3), 1)
            """,
            fixed="""
            import jax.numpy as jnp

            def update(x, i):
                x = x.at[i].set(0.0)  # expect: GT305
                return x

            y = update(jnp.ones(3), 1)
            """,
            truth=Truth(raises=("TypeError", "immutable"), framework="jax"),
        ),
        Invalid(
            """
            import jax.numpy as jnp

            counts = jnp.zeros(4)
            for k in [0, 2, 2]:
                counts[k] += 1.0  # expect: GT305
            """,
            fixed="""
            import jax.numpy as jnp

            counts = jnp.zeros(4)
            for k in [0, 2, 2]:
                counts = counts.at[k].add(1.0)  # expect: GT305
            """,
            truth=Truth(raises=("TypeError", "immutable"), framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp


            def loss(params, x):
                w = params["w"]
                w[:, 0] = 0.0  # expect: GT305
                return jnp.sum(x @ w)


            g = jax.grad(loss)({"w": jnp.ones((3, 2))}, jnp.ones((4, 3)))
            """,
            fixed="""
            import jax
            import jax.numpy as jnp


            def loss(params, x):
                w = params["w"]
                w = w.at[:, 0].set(0.0)  # expect: GT305
                return jnp.sum(x @ w)


            g = jax.grad(loss)({"w": jnp.ones((3, 2))}, jnp.ones((4, 3)))
            """,
            truth=Truth(raises=("TypeError", "JAX arrays are immutable"), framework="jax"),
        ),
    )

    def check(self, ctx):
        for stmt, found in ctx.jax.inplace.items():
            target = found.target
            name = ctx.source.segment(target.value)
            fix = at_update_fix(ctx, stmt)
            yield ctx.report(
                stmt,
                f"`{name}` is an immutable JAX array: this item assignment raises TypeError.",
                fix=fix,
            )
