"""One analysis per file with every framework's plug-in, and what that run must get right for TensorFlow and JAX."""

from __future__ import annotations

import textwrap

from gradtrace.analysis.context import AnalysisContext
from gradtrace.analysis.source import SourceFile
from gradtrace.engine import check_source


def findings(code: str):
    result = check_source(textwrap.dedent(code).lstrip("\n"), "example.py")
    assert not result.errors, result.errors
    return sorted((f.line, f.code) for f in result.findings)


def test_a_file_using_pytorch_and_jax_gets_both_frameworks_findings_from_one_run():
    code = textwrap.dedent("""
        import jax
        import jax.numpy as jnp
        import torch

        net = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        out = net(torch.ones(2, 3)).detach()
        (out ** 2).sum().backward()

        def loss(params, x):
            h = jax.lax.stop_gradient(jnp.tanh(x @ params["w1"]))
            return jnp.sum(h @ params["w2"])

        grads = jax.grad(loss)({"w1": jnp.ones((3, 4)), "w2": jnp.ones((4, 1))}, jnp.ones((2, 3)))
        """).lstrip("\n")
    assert [c for _, c in findings(code) if c.startswith(("GT1", "GT3"))] == ["GT105", "GT301"]
    ctx = AnalysisContext(SourceFile.parse("example.py", code))
    assert ctx.analysis.frameworks == {"torch", "jax"}
    assert ctx.torch.interp is ctx.analysis.run is ctx.jax.plugin.interp


def test_a_file_using_tensorflow_and_jax_reports_both():
    assert findings("""
        import jax
        import jax.numpy as jnp
        import numpy as np
        import tensorflow as tf

        w = tf.Variable([1.0, 2.0])
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.constant(np.square(w.numpy())))
        g = tape.gradient(loss, w)

        def f(x):
            return jnp.sum(x ** 2)

        gj = jax.grad(f)(3)
        """) == [(8, "GT204"), (14, "GT302")]


def test_a_helper_returning_a_dict_of_its_own_calls_does_not_stop_the_analysis():
    assert findings("""
        import jax
        import jax.numpy as jnp

        def tree(x):
            return {k: tree(v) for k, v in x.items()}

        class Holder:
            def __init__(self, x):
                self.t = tree(x)

        def loss(params, x):
            return jnp.sum(jax.lax.stop_gradient(x @ params["w"]))

        grads = jax.grad(loss)({"w": jnp.ones((3, 1))}, jnp.ones((2, 3)))
        """) == [(12, "GT301")]


def test_recursion_whose_arguments_grow_at_each_level_is_widened_not_followed_to_the_budget():
    assert findings("""
        import jax
        import jax.numpy as jnp

        def fingerprint(obj, path):
            def part(name, value):
                return name, fingerprint(value, (*path, name))
            if isinstance(obj, dict):
                return tuple(part(k, v) for k, v in obj.items())
            if isinstance(obj, (list, tuple)):
                return tuple(part(str(i), v) for i, v in enumerate(obj))
            return path, obj

        @jax.jit
        def step(state, x):
            key = fingerprint(state, ())
            return jnp.sum(x) * len(key)
        """) == []


def test_a_dtype_given_by_position_is_read():
    assert findings("""
        import jax
        import jax.numpy as jnp

        x = jnp.array([[3]], jnp.float32)
        g = jax.grad(lambda a: jnp.sum(a ** 2))(x)
        """) == []
    assert findings("""
        import jax
        import jax.numpy as jnp

        x = jnp.array([[3]])
        g = jax.grad(lambda a: jnp.sum(a ** 2))(x)
        """) == [(4, "GT302")]


def test_what_a_jitted_function_leaves_in_its_argument_is_concrete_for_the_caller():
    # flax.nnx variables are updated in place through jit: outside it they hold arrays, not tracers
    assert findings("""
        import jax.numpy as jnp
        import numpy as np
        from flax import nnx

        v = nnx.Variable(jnp.array(1.0))

        @nnx.jit
        def f(v):
            v[...] += 1.0
            return v[...] * 2

        y = f(v)
        np.testing.assert_allclose(v[...], 2.0)
        np.testing.assert_allclose(y, 4.0)
        """) == []


def test_a_cut_made_in_an_imported_project_module_is_not_reported_against_the_importer(tmp_path):
    from gradtrace.analysis.project import Project

    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "layers.py").write_text(textwrap.dedent("""
        import jax
        import jax.numpy as jnp

        def frozen_features(p, x):
            return jax.lax.stop_gradient(jnp.tanh(x @ p["enc"]))
        """).lstrip("\n"))
    train = tmp_path / "train.py"
    train.write_text(textwrap.dedent("""
        import jax
        import jax.numpy as jnp
        from layers import frozen_features

        def loss(params, x):
            return jnp.sum(frozen_features(params, x) @ params["head"])

        params = {"enc": jnp.ones((3, 4)), "head": jnp.ones((4,))}
        g = jax.grad(loss)(params, jnp.ones((2, 3)))
        """).lstrip("\n"))
    result = check_source(train.read_text(), str(train), project=Project(str(tmp_path)))
    assert not result.errors
    assert [f.code for f in result.findings if f.code.startswith("GT3")] == []


def frameworks_of(code: str) -> frozenset:
    return SourceFile.parse("example.py", textwrap.dedent(code).lstrip("\n")).frameworks


def test_a_helper_importing_tensorflow_or_jax_only_to_read_a_checkpoint_runs_no_such_analysis():
    # the shape of HF modeling files (`load_tf_weights_in_*`) and timm's `_load_weights`
    assert frameworks_of("""
        import torch

        def load_tf_weights(model, path):
            import tensorflow as tf
            for name, shape in tf.train.list_variables(path):
                model.state_dict()[name].copy_(torch.from_numpy(tf.train.load_variable(path, name)))

        def load_npz(model, path, bfloat16=False):
            if bfloat16:
                import jax.numpy as jnp
            return jnp.float32
        """) == {"torch"}


def test_a_function_that_imports_a_framework_to_train_with_it_runs_its_analysis():
    assert frameworks_of("""
        import torch

        def main():
            import jax
            return jax.grad(lambda w: w ** 2)(3.0)

        def fit(model, data):
            import tensorflow as tf
            with tf.GradientTape() as tape:
                loss = model(data)
            return tape.gradient(loss, model.trainable_variables)
        """) == {"torch", "jax", "tensorflow"}
    assert frameworks_of("""
        try:
            import jax
        except ImportError:
            jax = None
        """) == {"jax"}


def test_functions_behind_unusual_decorators_and_dict_merges_are_analysed_without_internal_errors():
    # jax's own rnn.py (a torch link in a docstring, `@jax.jit(static_argnums=...)` called as a decorator
    # factory) and fused-attention test (`dict(metas, key=value)` over a mapping of unknown keys) crashed
    findings("""
        # see https://pytorch.org/docs/stable/generated/torch.nn.LSTM.html
        from functools import partial

        import jax
        import jax.numpy as jnp

        @jax.jit(static_argnums=(1,))
        def step(x, n):
            return x * n

        def loss(q, descale_q, metas):
            merged = dict(metas, descale_q=descale_q)
            return jnp.sum(q * merged["descale_q"])

        def attend(metas):
            return jax.vmap(lambda q, d: loss(q, d, metas))(jnp.ones((3, 2)), jnp.ones((3,)))

        attend(dict(zip(["a", "b"], [1.0, 2.0])))
        """)
