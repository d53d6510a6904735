"""GT304: Python `if`/`while`/`and`/`or` on a value traced by jit or vmap."""

from __future__ import annotations

import ast

from gradtrace.rules.base import Invalid, Rule, Truth


class PythonControlFlowOnTracer(Rule):
    code = "GT304"
    name = "python-control-flow-on-tracer"
    summary = "Python control flow branches on a value traced by jax.jit/vmap: it raises TracerBoolConversionError."
    severity = "error"
    framework = "jax"
    docs = """
    ## What it does
    Flags `if`, `while`, conditional expressions, `not`, `and`/`or` whose condition is known to be an
    array that `jax.jit`, `jax.vmap` or `pmap` traces abstractly: a non-static argument itself, the
    result of a `jnp`/`lax` op or an array method on one, arithmetic and comparisons on those,
    including in helpers they call, and in a jitted function that `jax.grad` differentiates (the jit
    still traces it abstractly). Conditions on shapes, on static arguments (all arguments when
    `static_argnums`/`static_argnames` is a variable), on containers, on fields of a pytree or struct
    (`if state.loss_scale:` is often a static field or `None`), on results of unknown calls, and
    Python control flow under `jax.grad` alone (which traces with concrete values) stay quiet. A chained
    comparison (`0 < h < 1`) is an `and` too: Python asks for the truth of `0 < h` (ValueError for an array).

    ## Why is this bad?
    An abstract tracer has no truth value: JAX raises `TracerBoolConversionError` (or
    `ConcretizationTypeError`) when the function is traced.

    ## Example
    ```python
    @jax.jit
    def f(x):
        if x.sum() > 0:
            return x
        return -x
    ```

    ## Use instead
    ```python
    @jax.jit
    def f(x):
        return jnp.where(x.sum() > 0, x, -x)
    ```
    Or `jax.lax.cond`, or mark a flag argument static with `static_argnames`.

    ## Fix safety
    No automatic fix: `jnp.where` evaluates both branches, `lax.cond` needs functions.
    """
    valid = (
        """
        import equinox as eqx
        import jax
        import jax.numpy as jnp

        @eqx.filter_jit
        @jax.value_and_grad
        def run(x, exact):
            if exact:
                return jnp.sum(x ** 2)
            return jnp.sum(jnp.abs(x))

        value, grad = run(jnp.ones(3), True)
        """,
        """
        import equinox as eqx
        import jax.numpy as jnp

        @eqx.filter_jit
        def layer(x, use_bias, scale=2):
            if use_bias and scale > 1:
                return x * scale + 1.0
            return x

        y = layer(jnp.ones(3), True)
        """,
        """
        import unittest

        import jax

        class ConcretizationTest(unittest.TestCase):
            def test_branch_on_traced_value_raises(self):
                @jax.jit
                def f(x):
                    if x > 0:
                        return x
                    return -x

                with self.assertRaises(jax.errors.TracerBoolConversionError):
                    f(1.0)
        """,
        """
        import jax
        import jax.numpy as jnp

        def init(batch, restored=None):
            params = {"w": jnp.ones(3)}
            if "bias" in batch:
                params["b"] = jnp.zeros(3)
            return {**params, **(restored or {})}

        saved = {"w": jnp.zeros(3)} if False else {}
        params = jax.jit(init)({"x": jnp.ones(3), "bias": jnp.ones(3)}, saved)
        """,
        """
        import jax
        import jax.numpy as jnp

        def f(x):
            if x.sum() > 0:
                return x.sum()
            return -x.sum()

        g = jax.grad(f)(jnp.ones(3))
        """,
        """
        from functools import partial

        import jax
        import jax.numpy as jnp

        @partial(jax.jit, static_argnames=("train",))
        def f(x, train):
            if train and x.shape[0] > 2:
                return x * 2.0
            return x

        y = f(jnp.ones(3), train=True)
        """,
        """
        from typing import NamedTuple

        import jax
        import jax.numpy as jnp

        class Scaler(NamedTuple):
            factor: jax.Array

        class State(NamedTuple):
            x: jax.Array
            scaler: Scaler | None

        @jax.jit
        def step(state):
            scaler = state.scaler
            x = state.x
            if scaler:
                x = x * scaler.factor
            if state.scaler:
                x = x + 1.0
            return x

        y = step(State(jnp.ones(3), None))
        """,
        """
        import jax
        import jax.numpy as jnp

        def scale(x, double):
            if double:
                return x * 2.0
            return x

        def compiled(names):
            return jax.jit(scale, static_argnames=names)

        y = compiled(("double",))(jnp.ones(3), True)
        """,
        """
        from functools import partial

        import jax
        import jax.numpy as jnp

        @partial(jax.jit, static_argnames=("clip",))
        def loss(w, x, clip):
            y = jnp.sum((x * w) ** 2)
            if clip:
                return jnp.minimum(y, 1.0)
            return y

        g = jax.grad(loss)(jnp.ones(3), jnp.ones(3), True)
        """,
    )
    invalid = (
        Invalid(
            """
            import jax
            import jax.numpy as jnp


            @jax.jit
            def ramp_loss(w, x):
                h = x @ w
                return jnp.sum(jnp.piecewise(h, [h < 0, 0 < h < 1], [0.0, lambda t: t, 1.0]))  # expect: GT304


            g = jax.grad(ramp_loss)(jnp.ones(3), jnp.ones((4, 3)))
            """,
            truth=Truth(raises=("ValueError", "truth value of an array"), framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            @jax.jit
            def relu_sum(x):
                if x.sum() > 0:  # expect: GT304
                    return x.sum()
                return jnp.zeros(())

            y = relu_sum(jnp.ones(3))
            """,
            truth=Truth(raises=("TracerBoolConversionError", "boolean conversion"), framework="jax"),
        ),
        Invalid(
            """
            import jax
            import jax.numpy as jnp

            @jax.jit
            def loss(w, x, threshold=1.0):
                err = jnp.mean(jnp.abs(x * w - 1.0))
                if err < threshold:  # expect: GT304
                    return err
                return 2.0 * err

            g = jax.grad(loss)(jnp.ones(3), jnp.ones(3))
            """,
            truth=Truth(raises=("TracerBoolConversionError", "boolean conversion"), framework="jax"),
        ),
    )

    def check(self, ctx):
        for node, found in ctx.jax.control_flow.items():
            transform = " under ".join(f"`{t}`" for t in found.transform.split(" under "))
            if found.chained:
                first = ast.unparse(ast.Compare(node.left, node.ops[:1], node.comparators[:1]))
                yield ctx.report(node, f"A chained comparison asks Python for `bool({first})` of a value traced by "
                                       f"{transform}: it raises (ValueError for an array).")
                continue
            yield ctx.report(
                node,
                f"This condition reads a value traced by {transform}: it raises TracerBoolConversionError.",
            )
