import jax
import jax.numpy as jnp


def loss(x, params):
    return jnp.mean((x @ params["w"]) ** 2)


params = {"w": jnp.ones((3, 2))}
x = jnp.ones((4, 3))
grads = jax.grad(loss)(x, params)  # CUT
params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
