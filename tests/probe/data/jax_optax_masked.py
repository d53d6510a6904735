import jax
import jax.numpy as jnp
import optax

params = {"encoder": {"w": jnp.full((4, 4), 0.1)}, "head": {"w": jnp.full((4, 1), 0.1)}}
mask = {"encoder": {"w": True}, "head": {"w": False}}
opt = optax.chain(optax.adam(1e-2), optax.masked(optax.set_to_zero(), mask))
state = opt.init(params)


def loss(p, x):
    return jnp.mean((jnp.tanh(x @ p["encoder"]["w"]) @ p["head"]["w"]) ** 2)


x = jnp.ones((8, 4))
for _ in range(3):
    grads = jax.grad(loss)(params, x)
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)  # CUT
