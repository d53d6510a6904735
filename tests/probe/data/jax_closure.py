import jax
import jax.numpy as jnp

params = {"w": jnp.full((3,), 0.5), "b": jnp.zeros(())}


def loss(p, x, y):
    pred = x @ params["w"] + p["b"]  # CUT
    return jnp.mean((pred - y) ** 2)


x, y = jnp.ones((8, 3)), jnp.arange(8.0)
for _ in range(2):
    val, g = jax.value_and_grad(loss)(params, x, y)
    params = {k: params[k] - 0.1 * g[k] for k in params}
