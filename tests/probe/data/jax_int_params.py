import jax
import jax.numpy as jnp

params = {
    "W": jnp.array([[1, 2], [3, 4], [5, 6]]),  # CUT
    "b": jnp.zeros(2),
}


def loss(p, x):
    return jnp.sum((x @ p["W"] + p["b"]) ** 2)


x = jnp.ones((5, 3))
for _ in range(2):
    g = jax.grad(loss)(params, x)
    params = jax.tree_util.tree_map(lambda a, b: a - 0.01 * b, params, g)
