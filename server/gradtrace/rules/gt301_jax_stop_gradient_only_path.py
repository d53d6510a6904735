"""GT301: `lax.stop_gradient` on the only path from differentiated parameters to the output."""

from __future__ import annotations

from gradtrace.rules._messages import join_phrases
from gradtrace.rules.base import Invalid, Rule, Truth


def lost_names(lost) -> str:
    return join_phrases([f"`{n}`" for n in sorted(lost)])


STATISTICS = ("mean", "var", "variance", "std", "count", "step", "num_batches")
STAT_PREFIXES = ("running_", "moving_", "ema_", "batch_stats")


def statistic(origin: str) -> bool:
    """`params.norm.mean`, `params.bn.running_var`: a running statistic kept in the pytree, meant not to train."""
    leaf = origin.rsplit(".", 1)[-1].lower()
    return "." in origin and (leaf in STATISTICS or leaf.startswith(STAT_PREFIXES))


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
    `jax.tree_util.tree_map(jax.lax.stop_gradient, tree)` (also `jax.tree.map`, `jax.tree_map`, or a
    `lambda x: lax.stop_gradient(x)`), like `lax.stop_gradient(tree)` itself, stops every leaf of the tree:
    when the tree is (a sub-dict of) the differentiated parameters, the leaves read afterwards
    (`norm["scale"]`, `norm["bias"]`) are named.
    Leaves named like running statistics (`mean`, `var`, `running_*`, `moving_*`, `count`) are meant not
    to train and are not reported.

    ## Why is this bad?
    JAX returns an all-zero gradient for every parameter behind the cut: no error, the parameters just
    never move.
    Stop only what must not train (a target, a statistic), not the path the parameters need.

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

        def normalize(norm, h):
            stats = jax.tree_util.tree_map(jax.lax.stop_gradient, {"mean": norm["mean"], "var": norm["var"]})
            h = (h - stats["mean"]) / jnp.sqrt(stats["var"] + 1e-5)
            return h * norm["scale"] + norm["bias"]

        def loss(params, x):
            return jnp.sum(normalize(params["norm"], x @ params["w"]) ** 2)

        params = {"w": jnp.ones((3, 2)),
                  "norm": {"scale": jnp.ones(2), "bias": jnp.ones(2), "mean": jnp.zeros(2), "var": jnp.ones(2)}}
        grads = jax.grad(loss)(params, jnp.ones((4, 3)))
        """,
        """
        import jax
        import jax.numpy as jnp

        def embed(params, x):
            return jnp.tanh(x @ params["w"])

        def byol_loss(params, x1, x2):
            target = jax.tree.map(jax.lax.stop_gradient, params)
            return jnp.mean((embed(params, x1) - embed(target, x2)) ** 2)

        grads = jax.grad(byol_loss)({"w": jnp.ones((3, 2))}, jnp.ones((4, 3)), jnp.zeros((4, 3)))
        """,
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


            def loss_fn(params, x):
                frozen = jax.lax.stop_gradient(params)  # expect: GT301
                return jnp.mean(x @ params["policy"]) + jnp.mean((x @ frozen["value"]) ** 2)


            params = {"policy": jnp.ones((3, 1)), "value": jnp.ones((3, 1))}
            x = jnp.ones((4, 3))
            grads = jax.grad(loss_fn)(params, x)
            params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
            g_value = grads["value"]
            """,
            truth=Truth(grads={"g_value": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import flax.linen as nn
            import jax
            import jax.numpy as jnp


            class Net(nn.Module):
                def setup(self):
                    self.encoder = nn.Dense(8)
                    self.head = nn.Dense(1)

                def __call__(self, x):
                    h = jax.lax.stop_gradient(self.encoder(x))  # expect: GT301
                    return self.head(h)


            model = Net()
            x = jnp.ones((4, 3))
            params = model.init(jax.random.PRNGKey(0), x)
            g = jax.grad(lambda p: jnp.mean(model.apply(p, x) ** 2))(params)
            """,
            truth=Truth(grads={"g['params']['encoder']['kernel']": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def normalize(norm, h):
                norm = jax.tree_util.tree_map(jax.lax.stop_gradient, norm)  # expect: GT301
                h = (h - norm["mean"]) / jnp.sqrt(norm["var"] + 1e-5)
                return h * norm["scale"] + norm["bias"]

            def loss(params, x):
                h = normalize(params["norm"], x @ params["w"])
                return jnp.sum(h ** 2)

            params = {"w": jnp.ones((3, 2)) * 0.5,
                      "norm": {"scale": jnp.ones(2), "bias": jnp.ones(2), "mean": jnp.zeros(2), "var": jnp.ones(2)}}
            grads = jax.grad(loss)(params, jnp.ones((4, 3)))
            g_scale, g_bias = grads["norm"]["scale"], grads["norm"]["bias"]
            """,
            truth=Truth(grads={"g_scale": "zero", "g_bias": "zero"}, framework="jax"),
        ),
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
        for node, found in ctx.jax.lost_cuts.items():
            cut = found.cut
            if cut.kind != "stop_gradient":
                continue
            lost = frozenset(o for o in found.lost if not statistic(o))
            if not lost:
                continue
            names = lost_names(lost)
            what = "`tree_map(lax.stop_gradient, ...)`" if cut.op.startswith("tree_map") else "`lax.stop_gradient`"
            yield ctx.report(
                node,
                f"{names} {'gets a zero gradient' if len(lost) == 1 else 'get zero gradients'}: {what} cuts "
                f"{'its' if len(lost) == 1 else 'their'} only path to the loss.",
                data={"lost": sorted(lost), "op": cut.op},
            )
