"""GT303: float()/int()/np.asarray/.item()/.tolist() on a traced value inside grad or jit."""

from __future__ import annotations

from gradtrace.analysis.frameworks.jax.api import HOST_CALLBACKS
from gradtrace.rules.base import Invalid, Rule, Truth


def error_name(op: str) -> str:
    if op.startswith("np."):
        return "TracerArrayConversionError"
    if op == "range()":
        return "TracerIntegerConversionError"
    if op == "bool()":
        return "TracerBoolConversionError"
    return "ConcretizationTypeError"


class TracerConversion(Rule):
    code = "GT303"
    name = "tracer-conversion"
    summary = "A traced value is converted to a Python or NumPy value inside a differentiated or jitted function."
    severity = "error"
    framework = "jax"
    docs = """
    ## What it does
    Flags `float()`, `int()`, `bool()`, `range()`, `np.asarray`/`np.array`/other NumPy functions,
    `.tolist()` and `.item()` applied to a value that is traced — a differentiated argument, any argument of a jitted
    function, or something computed from them — including inside helpers those functions call.
    Conversions of static values (`x.shape[0]`, non-differentiated Python arguments) stay quiet. Also flags
    `jax.pure_callback` on a differentiated value: the host function has no derivative, and `jax.grad`
    through it raises `ValueError` (wrap it in a `jax.custom_jvp`/`custom_vjp`); under `jit` alone it is fine.

    ## Why is this bad?
    A tracer has no concrete value: `float()` and `.tolist()` raise `ConcretizationTypeError`,
    `np.asarray` raises `TracerArrayConversionError`, `range(n)` of a jitted argument raises
    `TracerIntegerConversionError`, and under `jit` every conversion raises. Under
    `jax.grad` alone, `.item()` silently returns a constant: the gradient through it is lost
    (warning).

    ## Example
    ```python
    def loss(params, x):
        temp = float(jnp.exp(params["log_temp"]))
        return jnp.sum(jax.nn.softmax(x / temp))
    ```

    ## Use instead
    ```python
    def loss(params, x):
        temp = jnp.exp(params["log_temp"])
        return jnp.sum(jax.nn.softmax(x / temp))
    ```

    ## Fix safety
    No automatic fix: removing the conversion can change how the value is used.
    """
    valid = (
        """
        import jax
        import jax.numpy as jnp
        import numpy as np


        def host_sin(x):
            return np.sin(x)


        @jax.jit
        def predict(w):
            return jax.pure_callback(host_sin, jax.ShapeDtypeStruct(w.shape, w.dtype), w)


        y = predict(jnp.ones(3))
        """,
        """
        import jax
        import jax.numpy as jnp
        import numpy as np

        @jax.jit
        def flatten(x):
            assert np.ndim(x) == 2 and np.shape(x)[0] > 0
            return jnp.reshape(x, (-1,))

        y = flatten(jnp.ones((2, 3)))
        """,
        """
        import jax
        import jax.numpy as jnp

        def loss(w, x):
            n = float(x.shape[0])
            return jnp.sum(w * x) / n

        g = jax.grad(loss)(jnp.ones(3), jnp.ones(3))
        """,
        """
        import jax
        import jax.numpy as jnp

        def loss(w, scale):
            return jnp.sum(w) * float(scale)

        g = jax.grad(loss)(jnp.ones(3), 2)
        """,
    )
    invalid = (
        Invalid(
            """
            import jax
            import jax.numpy as jnp
            import numpy as np


            @jax.jit
            def soft_rank(values):
                values = np.array(values)  # expect: GT303
                order = np.argsort(-values)
                return jnp.asarray(values[order])


            r = soft_rank(jnp.ones(4))
            """,
            truth=Truth(raises=("TracerArrayConversionError", ""), framework="jax"),
        ),
        Invalid(
            """
            import flax.linen as nn
            import jax
            import jax.numpy as jnp
            import numpy as np


            class Scaler(nn.Module):
                @nn.compact
                def __call__(self, x):
                    h = nn.Dense(4)(x)
                    return np.asarray(h) * 2.0  # expect: GT303


            model = Scaler()
            x = jnp.ones((2, 3))
            params = model.init(jax.random.PRNGKey(0), x)
            g = jax.grad(lambda p: jnp.sum(model.apply(p, x)))(params)
            """,
            truth=Truth(raises=("TracerArrayConversionError", ""), framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp
            import numpy as np


            def host_sin(x):
                return np.sin(x)


            def loss(w):
                y = jax.pure_callback(host_sin, jax.ShapeDtypeStruct(w.shape, w.dtype), w)  # expect: GT303
                return jnp.sum(y ** 2)


            g = jax.grad(loss)(jnp.ones(3))
            """,
            truth=Truth(raises=("ValueError", "Pure callbacks do not support JVP"), framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def loss(w, x):
                scale = float(jnp.sum(w))  # expect: GT303
                return scale * jnp.sum(x * w)

            g = jax.grad(loss)(jnp.ones(3), jnp.ones(3))
            """,
            truth=Truth(raises=("ConcretizationTypeError", "concrete value"), framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp
            import numpy as np

            @jax.jit
            def normalize(x):
                arr = np.asarray(x)  # expect: GT303
                return x / arr.sum()

            y = normalize(jnp.ones(4))
            """,
            truth=Truth(raises=("TracerArrayConversionError", "__array__"), framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            def loss(w, x):
                return jnp.asarray(w.item()) * jnp.sum(x)  # expect: GT303

            g = jax.grad(loss)(jnp.array(2.0), jnp.ones(3))
            """,
            truth=Truth(grads={"g": "zero"}, framework="jax"),
        ),
        Invalid(
            """
            import jax

            @jax.jit
            def power_sum(x, n):
                total = 0.0
                for i in range(n):  # expect: GT303
                    total = total + x ** i
                return total

            y = power_sum(2.0, 3)
            """,
            truth=Truth(raises=("TracerIntegerConversionError", "__index__"), framework="jax"),
        ),
    )

    def check(self, ctx):
        for node, found in ctx.jax.conversions.items():
            op, severity, transform = found.op, found.severity, found.transform
            if op in HOST_CALLBACKS:
                msg = f"`{op}` has no derivative: differentiating through it with {transform} raises ValueError."
            elif severity == "error":
                msg = f"`{op}` of a value traced by {transform} raises {error_name(op)}."
            else:
                msg = f"`{op}` turns a value differentiated by {transform} into a constant: its gradient is lost."
            yield ctx.report(node, msg, severity=severity, data={"op": op})
