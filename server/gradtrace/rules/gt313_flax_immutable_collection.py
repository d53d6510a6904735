"""GT313: a flax layer that updates a collection, run by an `apply` not told that collection may change."""

from __future__ import annotations

from gradtrace.rules.base import Invalid, Rule, Truth


class FlaxImmutableCollection(Rule):
    code = "GT313"
    name = "flax-immutable-collection"
    summary = "`model.apply` runs BatchNorm without `batch_stats` given, or updating it without `mutable`: flax raises."
    severity = "error"
    framework = "jax"
    docs = """
    ## What it does
    Flags `model.apply(variables, x, ...)` (also `state.apply_fn(...)` of a `TrainState`) when the flax
    linen module it runs uses `nn.BatchNorm` in training mode (`use_running_average=False`, given where the
    layer is made or where it is called, also as `not train` with `train=True`) and the call has no
    `mutable=` argument: BatchNorm updates its running statistics in the `batch_stats` collection. Also when
    the variables it is given (`{"params": params}`) have no `batch_stats` at all, in either mode.

    ## Why is this bad?
    `apply` lets only the collections named in `mutable` change. Updating `batch_stats` outside them
    raises `ModifyScopeVariableError: ... collection "batch_stats" is immutable`, and reading a collection
    that was not given raises `ScopeCollectionNotFound` (keeping only `model.init(...)["params"]` drops it), so
    the training step (and its gradient) never runs.

    ## Example
    ```python
    out = model.apply({"params": params, "batch_stats": stats}, x, train=True)
    ```

    ## Use instead
    ```python
    out, updates = model.apply({"params": params, "batch_stats": stats}, x, train=True,
                               mutable=["batch_stats"])
    stats = updates["batch_stats"]
    ```

    ## Fix safety
    No automatic fix: the updated statistics returned beside the output must be kept.
    """
    valid = (
        """
        import flax.linen as nn
        import jax
        import jax.numpy as jnp


        class Net(nn.Module):
            @nn.compact
            def __call__(self, x, train: bool = True):
                h = nn.BatchNorm(use_running_average=not train)(nn.Dense(8)(x))
                return nn.Dense(1)(nn.relu(h))


        model = Net()
        variables = model.init(jax.random.PRNGKey(0), jnp.ones((4, 3)), train=False)


        def loss_fn(params, x):
            out, updates = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                                       mutable=["batch_stats"])
            return jnp.mean(out ** 2), updates


        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"], jnp.ones((4, 3)))
        prediction = model.apply(variables, jnp.ones((4, 3)), train=False)
        """,
    )
    invalid = (
        Invalid(
            """
            import flax.linen as nn
            import jax
            import jax.numpy as jnp


            class Net(nn.Module):
                @nn.compact
                def __call__(self, x, train: bool = True):
                    h = nn.BatchNorm(use_running_average=not train)(nn.Dense(8)(x))
                    return nn.Dense(1)(nn.relu(h))


            model = Net()
            variables = model.init(jax.random.PRNGKey(0), jnp.ones((4, 3)), train=False)


            def loss_fn(params, x):
                out = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True)  # expect: GT313
                return jnp.mean(out ** 2)


            grads = jax.grad(loss_fn)(variables["params"], jnp.ones((4, 3)))
            """,
            truth=Truth(raises=("ModifyScopeVariableError", "is immutable"), framework="jax"),
        ),
        Invalid(
            """
            import flax.linen as nn
            import jax
            import jax.numpy as jnp


            class Net(nn.Module):
                @nn.compact
                def __call__(self, x):
                    h = nn.BatchNorm(use_running_average=True)(nn.Dense(8)(x))
                    return nn.Dense(1)(nn.relu(h))


            model = Net()
            params = model.init(jax.random.PRNGKey(0), jnp.ones((4, 3)))["params"]


            def loss_fn(params, x):
                return jnp.mean(model.apply({"params": params}, x) ** 2)  # expect: GT313


            grads = jax.grad(loss_fn)(params, jnp.ones((4, 3)))
            """,
            truth=Truth(raises=("ScopeCollectionNotFound", "batch_stats"), framework="jax"),
        ),
    )

    def check(self, ctx):
        for node, found in ctx.jax.immutable.items():
            if found.missing:
                message = (f"This runs `{found.layer}` with no `{found.collection}` in the variables it is given: flax "
                           "raises ScopeCollectionNotFound.")
            else:
                message = (f"This runs `{found.layer}` in training mode without `mutable=['{found.collection}']`: flax "
                           "raises ModifyScopeVariableError.")
            yield ctx.report(node, message)
