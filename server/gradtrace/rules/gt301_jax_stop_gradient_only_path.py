"""GT301: `lax.stop_gradient` on the only path from differentiated parameters to the output."""

from __future__ import annotations

from gradtrace.analysis.jax_flow import jax_facts
from gradtrace.rules.base import Invalid, Rule, Truth


def lost_names(lost) -> str:
    return ", ".join(f"`{n}`" for n in sorted(lost))


class JaxStopGradientOnlyPath(Rule):
    code = "GT301"
    name = "jax-stop-gradient-only-path"
    summary = "lax.stop_gradient cuts differentiated parameters from the function's output on their only path."
    severity = "warning"
    framework = "jax"
    docs = """
    ## What it does
    Flags `jax.lax.stop_gradient(...)` inside a function differentiated by `jax.grad`/`value_and_grad`/
    `vjp` (directly or through helpers it calls) when a differentiated argument — or a leaf of its
    pytree, such as `params["w1"]` — reaches the output only through it. A stopped bootstrap target
    or a straight-through residual, where the parameters still reach the output, stays quiet.

    ## Why is this bad?
    JAX returns an all-zero gradient for every parameter behind the cut: no error, the parameters just
    never move.

    ## Example
    ```python
    def standardize(h):
        return jax.lax.stop_gradient((h - h.mean(0)) / h.std(0))
    ```

    ## Use instead
    ```python
    def standardize(h):
        mu, sd = jax.lax.stop_gradient((h.mean(0), h.std(0)))
        return (h - mu) / sd
    ```

    ## Fix safety
    No automatic fix: where the gradient should stop is the author's call.
    """
    valid = (
        """
        import jax
        import jax.numpy as jnp

        def value(params, obs):
            return jnp.tanh(obs @ params["w"])

        def td_loss(params, obs, rew, next_obs):
            target = jax.lax.stop_gradient(rew + 0.9 * value(params, next_obs))
            return jnp.mean((value(params, obs) - target) ** 2)

        params = {"w": jnp.ones((3,))}
        g = jax.grad(td_loss)(params, jnp.ones((2, 3)), jnp.ones(2), jnp.ones((2, 3)))
        """,
        """
        import jax
        import jax.numpy as jnp

        def quantized(w, x):
            q = w + jax.lax.stop_gradient(jnp.round(w) - w)
            return jnp.sum((x @ q) ** 2)

        g = jax.grad(quantized)(jnp.ones(3) * 0.4, jnp.ones((2, 3)))
        """,
    )
    invalid = (
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def loss(params, x):
                h = jnp.tanh(x @ params["w1"])
                h = jax.lax.stop_gradient(h)  # expect: GT301
                return jnp.sum((h @ params["w2"]) ** 2)

            params = {"w1": jnp.ones((3, 4)), "w2": jnp.ones((4, 1))}
            x = jnp.ones((2, 3))
            grads = jax.grad(loss)(params, x)
            g_w1 = grads["w1"]
            """,
            truth=Truth(grads={"g_w1": "zero"}, framework="jax"),
        ),
    )

    def check(self, ctx):
        facts = jax_facts(ctx)
        for node, (cut, lost, gf) in facts.lost_cuts.items():
            if cut.kind != "stop_gradient":
                continue
            names = lost_names(lost)
            yield ctx.report(
                node,
                f"`lax.stop_gradient` sits on the only path from {names} to the output of the function "
                f"differentiated by `jax.{gf.mode}` (line {gf.node.lineno}), so {names} "
                f"{'gets' if len(lost) == 1 else 'get'} an all-zero gradient; stop only what must not train.",
                data={"lost": sorted(lost), "op": cut.op},
            )
