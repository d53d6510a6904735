"""GT307: argmax, integer casts or rounding on the only path from differentiated parameters to the output."""

from __future__ import annotations

from gradtrace.rules.base import Invalid, Rule, Truth
from gradtrace.rules.gt301_jax_stop_gradient_only_path import lost_names


class JaxNondifferentiableOp(Rule):
    code = "GT307"
    name = "jax-nondifferentiable-op"
    summary = "argmax, an integer cast, rounding or a comparison leaves differentiated parameters with a zero gradient."
    severity = "warning"
    framework = "jax"
    docs = """
    ## What it does
    Flags `jnp.argmax`/`argmin`/`argsort`, `.astype(int)`, `jnp.round`/`floor`/`ceil`/`sign`/`heaviside` inside a
    differentiated function when a differentiated parameter reaches the output only through them —
    and discrete samples (`jax.random.categorical`, `bernoulli`, `poisson`) drawn from it, and comparisons
    (`jnp.where(x @ w > 0, h, 0.0)`, a mask `h * (x @ w > 0)`). An integer used as an index passes nothing
    back to what computed it (`table[(gate * 9).astype(int)]`), nor do the indices `lax.top_k` returns beside its
    values (`_, top = lax.top_k(scores, k)`, then `values[top]`). Indexing with an argmax of the indexed
    values, or a straight-through estimator, stays quiet. The bodies of `lax.scan`, `cond`, `switch`, `map`,
    `fori_loop` and `while_loop` are followed: a rounding inside an RNN cell is found there. So is a
    `jax.custom_vjp` whose backward rule returns a zero (`jnp.zeros_like(v)`, `None`) for an input on
    every path: whatever computed that input gets a zero gradient at each call. Flax linen modules are run
    where `model.apply(params, x)` runs them, each layer's parameters named by their path
    (`params.params.Dense_0`), also through a `TrainState`'s `apply_fn`.

    ## Why is this bad?
    JAX defines these gradients as zero (integer results carry `float0` tangents): the parameters behind
    them get all-zero gradients and never train, without any error.

    ## Example
    ```python
    def loss(w, x):
        return jnp.sum(jnp.round(x @ w) ** 2)
    ```

    ## Use instead
    ```python
    def loss(w, x):
        z = x @ w
        return jnp.sum((z + jax.lax.stop_gradient(jnp.round(z) - z)) ** 2)
    ```

    ## Fix safety
    No automatic fix: a surrogate gradient changes the optimisation.
    """
    valid = (
        """
        import flax.linen as nn
        import jax
        import jax.numpy as jnp


        class MLP(nn.Module):
            @nn.compact
            def __call__(self, x):
                h = nn.relu(nn.Dense(8)(x))
                logits = nn.Dense(3)(h)
                return logits, jnp.argmax(logits, axis=-1)


        model = MLP()
        x = jnp.ones((4, 3))
        params = model.init(jax.random.PRNGKey(0), x)
        g = jax.grad(lambda p: jnp.mean(model.apply(p, x)[0] ** 2))(params)
        """,
        """
        import jax
        import jax.numpy as jnp


        @jax.custom_vjp
        def scale(x, s):
            return x * s


        def scale_fwd(x, s):
            return x * s, (x, s)


        def scale_bwd(res, g):
            x, s = res
            return g * s, jnp.sum(g * x)


        scale.defvjp(scale_fwd, scale_bwd)


        def loss(params, x):
            return jnp.sum(scale(x @ params["w"], params["gain"]) ** 2)


        g = jax.grad(loss)({"w": jnp.ones((3, 2)), "gain": jnp.array(2.0)}, jnp.ones((4, 3)))
        """,
        """
        import jax
        import jax.numpy as jnp

        def loss(w, x):
            logits = x @ w
            best = jnp.take_along_axis(logits, jnp.argmax(logits, axis=1)[:, None], axis=1)
            return jnp.sum(best ** 2)

        g = jax.grad(loss)(jnp.ones((3, 2)), jnp.ones((4, 3)))
        """,
        """
        import jax
        import jax.numpy as jnp


        def loss(params, xs):
            def cell(h, x_t):
                h = jnp.tanh(x_t @ params["w_xh"] + h @ params["w_hh"])
                return h, h @ params["w_hy"]

            _, ys = jax.lax.scan(cell, jnp.zeros((2, 3)), xs)
            return jnp.mean(ys ** 2)


        params = {"w_xh": jnp.full((3, 3), 0.2), "w_hh": jnp.eye(3) * 0.5, "w_hy": jnp.full((3, 1), 0.3)}
        g = jax.grad(loss)(params, jnp.ones((4, 2, 3)))
        """,
        """
        import jax
        import jax.numpy as jnp
        from jax import lax

        values = jnp.linspace(0.0, 1.0, 10)
        features = jnp.ones((10, 4)) * jnp.arange(10.0)[:, None]


        def objective(theta, k=3):
            scores = features @ theta
            best, _ = lax.top_k(scores, k)
            return jnp.sum(best)


        g = jax.grad(objective)(jnp.array([0.1, 0.2, 0.3, 0.4]))
        """,
    )
    invalid = (
        Invalid(
            """
            import flax.linen as nn
            import jax
            import jax.numpy as jnp
            import optax
            from flax.training import train_state


            class Classifier(nn.Module):
                @nn.compact
                def __call__(self, x):
                    return nn.Dense(3)(nn.relu(nn.Dense(8)(x)))


            def train_step(state, x, y):
                def loss_fn(params):
                    logits = state.apply_fn({"params": params}, x)
                    return jnp.mean((jnp.argmax(logits, -1) - y) ** 2.0)  # expect: GT307

                return jax.grad(loss_fn)(state.params)


            model = Classifier()
            x = jnp.ones((4, 5))
            variables = model.init(jax.random.PRNGKey(0), x)
            state = train_state.TrainState.create(apply_fn=model.apply, params=variables["params"], tx=optax.sgd(0.1))
            g = train_step(state, x, jnp.zeros(4))
            """,
            truth=Truth(grads={"g['Dense_0']['kernel']": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import flax.linen as nn
            import jax
            import jax.numpy as jnp


            class MLP(nn.Module):
                @nn.compact
                def __call__(self, x):
                    h = jnp.round(nn.Dense(8)(x))  # expect: GT307
                    return nn.Dense(1)(h)


            model = MLP()
            x = jnp.ones((4, 3))
            params = model.init(jax.random.PRNGKey(0), x)
            g = jax.grad(lambda p: jnp.mean(model.apply(p, x) ** 2))(params)
            """,
            truth=Truth(grads={"g['params']['Dense_0']['kernel']": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp


            @jax.custom_vjp
            def scale(x, s):
                return x * s


            def scale_fwd(x, s):
                return x * s, (x, s)


            def scale_bwd(res, g):
                x, s = res
                return g * s, jnp.zeros_like(s)  # expect: GT307


            scale.defvjp(scale_fwd, scale_bwd)


            def loss(params, x):
                return jnp.sum(scale(x @ params["w"], params["gain"]) ** 2)


            g = jax.grad(loss)({"w": jnp.ones((3, 2)), "gain": jnp.array(2.0)}, jnp.ones((4, 3)))
            """,
            truth=Truth(grads={"g['gain']": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def reward(logits, key):
                actions = jax.random.categorical(key, logits)  # expect: GT307
                return jnp.mean(actions * 1.0)

            g = jax.grad(reward)(jnp.array([[0.1, 0.5, 0.2]] * 4), jax.random.PRNGKey(0))
            """,
            truth=Truth(grads={"g": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def loss(w, x):
                q = jnp.round(x @ w)  # expect: GT307
                return jnp.sum(q ** 2)

            g = jax.grad(loss)(jnp.ones(3) * 0.3, jnp.ones((2, 3)))
            """,
            truth=Truth(grads={"g": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def model(params, x):
                gate = jax.nn.sigmoid(x @ params["router"])
                bucket = (gate * 9).astype(jnp.int32)  # expect: GT307
                return params["table"][bucket]

            params = {"router": jnp.ones(3) * 0.5, "table": jnp.linspace(0.0, 1.0, 10)}
            g = jax.grad(lambda p, x: jnp.mean(model(p, x) ** 2))(params, jnp.ones((4, 3)))
            """,
            truth=Truth(grads={"g['router']": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def loss(params, x):
                h = jnp.tanh(x @ params["w"])
                gated = jnp.where(x @ params["gate"] > 0.0, h, 0.0)  # expect: GT307
                return jnp.mean(gated ** 2)

            params = {"w": jnp.full((3, 2), 0.3), "gate": jnp.full((3, 2), 0.2)}
            g = jax.grad(loss)(params, jnp.ones((4, 3)))
            """,
            truth=Truth(grads={"g['gate']": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp


            def fake_quant(params, scale=127.0):
                return jax.tree_util.tree_map(lambda p: (p * scale).astype(jnp.int8) / scale, params)  # expect: GT307


            def loss(params, x):
                q = fake_quant(params)
                return jnp.mean((x @ q["w"] + q["b"]) ** 2)


            params = {"w": jnp.full((3, 2), 0.3), "b": jnp.full(2, 0.1)}
            g = jax.grad(loss)(params, jnp.ones((4, 3)))
            """,
            truth=Truth(grads={"g['w']": "zero", "g['b']": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp


            def loss(w, x):
                spikes = jnp.heaviside(x @ w - 1.0, 0.0)  # expect: GT307
                return jnp.mean((spikes - 0.5) ** 2)


            g = jax.grad(loss)(jnp.full((3, 2), 0.5), jnp.ones((4, 3)))
            """,
            truth=Truth(grads={"g": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp


            def loss(params, xs):
                def cell(h, x_t):
                    h = jnp.round(jnp.tanh(x_t @ params["w_xh"] + h @ params["w_hh"]))  # expect: GT307
                    return h, h @ params["w_hy"]

                _, ys = jax.lax.scan(cell, jnp.zeros((2, 3)), xs)
                return jnp.mean(ys ** 2)


            params = {"w_xh": jnp.full((3, 3), 0.2), "w_hh": jnp.eye(3) * 0.5, "w_hy": jnp.full((3, 1), 0.3)}
            g = jax.grad(loss)(params, jnp.ones((4, 2, 3)))
            """,
            truth=Truth(grads={"g['w_xh']": "zero", "g['w_hh']": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp
            from jax import lax

            values = jnp.linspace(0.0, 1.0, 10)
            features = jnp.ones((10, 4)) * jnp.arange(10.0)[:, None]


            def objective(theta, k=3):
                scores = features @ theta
                _, top = lax.top_k(scores, k)  # expect: GT307
                return jnp.sum(values[top])


            d_theta = jax.grad(objective)(jnp.array([0.1, 0.2, 0.3, 0.4]))
            """,
            truth=Truth(grads={"d_theta": "zero"}, framework="jax"),
        ),
    )

    def check(self, ctx):
        for node, found in ctx.jax.lost_cuts.items():
            cut, lost = found.cut, found.lost
            if cut.kind not in ("int_cast", "zero_grad"):
                continue
            names = lost_names(lost)
            yield ctx.report(
                node,
                f"{names} {'gets' if len(lost) == 1 else 'get'} a zero gradient: `{cut.op}` cuts "
                f"{'its' if len(lost) == 1 else 'their'} only path to the loss.",
                data={"lost": sorted(lost), "op": cut.op},
            )
