import jax
import jax.numpy as jnp


@jax.jit
def step(params, x, y):
    def loss(p):
        return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

    value, grads = jax.value_and_grad(loss)(params)
    return value, jax.tree_util.tree_map(lambda p, g: p - 0.05 * g, params, grads)


params = {"w": jnp.full((3, 1), 0.1), "b": jnp.zeros(1)}
x, y = jnp.ones((8, 3)), jnp.ones((8, 1))
for _ in range(3):
    value, params = step(params, x, y)
