"""Value-flow behaviour a user sees: what is flagged, what stays quiet, and what the message names."""

from __future__ import annotations

import textwrap
import time

from gradtrace.engine import check_source
from gradtrace.fixes.apply import apply_edits


def findings(code: str, *, all_severities=False):
    result = check_source(textwrap.dedent(code).lstrip("\n"), "example.py")
    assert not result.errors, result.errors
    return [f for f in result.findings if all_severities or f.severity in ("warning", "error")]


def codes(code: str) -> list[tuple[int, str]]:
    return sorted((f.line, f.code) for f in findings(code))


def test_cut_inside_a_helper_called_under_the_tape_is_reported_in_the_helper():
    got = findings("""
        import tensorflow as tf

        w1 = tf.Variable(tf.ones([3, 4]))
        w2 = tf.Variable(tf.ones([4, 1]))

        def features(x):
            return tf.constant(tf.nn.relu(x @ w1).numpy())

        def step(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(features(x) @ w2)
            return tape.gradient(loss, [w1, w2])
        """)
    assert [(f.line, f.code) for f in got] == [(7, "GT204")]
    assert "`w1`" in got[0].message and "`w2`" not in got[0].message


def test_tuple_unpacking_and_reassignment_are_followed():
    assert codes("""
        import tensorflow as tf

        a = tf.Variable(1.0)
        b = tf.Variable(2.0)
        with tf.GradientTape() as tape:
            pair = (a * 2.0, b * 3.0)
            u, v = pair
            v = tf.stop_gradient(v)
            loss = u + v
        ga, gb = tape.gradient(loss, [a, b])
        """) == [(8, "GT203")]


def test_stop_gradient_on_a_branch_that_another_path_still_reaches_is_quiet():
    assert codes("""
        import tensorflow as tf

        w = tf.Variable([1.0, 2.0])
        with tf.GradientTape() as tape:
            z = w * 2.0
            baseline = tf.stop_gradient(tf.reduce_mean(z))
            loss = tf.reduce_sum((z - baseline) ** 2)
        g = tape.gradient(loss, w)
        """) == []


def test_sources_of_another_model_are_not_meant_to_train():
    # the target network is stopped on purpose: only the online network is differentiated
    assert codes("""
        import tensorflow as tf

        online = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
        target = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
        x = tf.ones([4, 3])
        with tf.GradientTape() as tape:
            y = tf.stop_gradient(target(x))
            loss = tf.reduce_mean((online(x) - y) ** 2)
        grads = tape.gradient(loss, online.trainable_variables)
        """) == []


def test_unwatched_constant_fix_inserts_watch_with_the_block_indentation():
    code = textwrap.dedent("""
        import tensorflow as tf

        def sensitivity(model, inputs):
            x = tf.convert_to_tensor(inputs)
            with tf.GradientTape() as t:
                y = model(x)
            return t.gradient(y, x)

        net = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
        s = sensitivity(net, [[1.0, 2.0]])
        """).lstrip("\n")
    got = findings(code)
    assert [(f.line, f.code) for f in got] == [(7, "GT202")]
    fixed = apply_edits(code, got[0].fix.edits)
    assert "        t.watch(x)\n        y = model(x)" in fixed


def test_information_for_unconnected_sources_offers_an_unsafe_zero_fix():
    got = findings("""
        import tensorflow as tf

        a = tf.Variable(1.0)
        b = tf.Variable(2.0)
        with tf.GradientTape() as tape:
            y = a * 3.0
        ga, gb = tape.gradient(y, [a, b])
        """, all_severities=True)
    assert [(f.code, f.severity) for f in got] == [("GT209", "information")]
    assert got[0].fix is not None and not got[0].fix.safe
    assert "unconnected_gradients=tf.UnconnectedGradients.ZERO" in got[0].fix.edits[0].text


def test_persistent_fix_keeps_other_arguments():
    code = textwrap.dedent("""
        import tensorflow as tf

        x = tf.Variable(2.0)
        with tf.GradientTape(watch_accessed_variables=True) as tape:
            y = x * x
        g1 = tape.gradient(y, x)
        g2 = tape.gradient(y, x)
        """).lstrip("\n")
    got = findings(code)
    assert [(f.line, f.code, f.severity) for f in got] == [(7, "GT207", "error")]
    fixed = apply_edits(code, got[0].fix.edits)
    assert "tf.GradientTape(watch_accessed_variables=True, persistent=True)" in fixed


def test_jax_pytree_leaves_are_tracked_through_helpers():
    got = findings("""
        import jax
        import jax.numpy as jnp

        def encoder(p, x):
            return jax.lax.stop_gradient(jnp.tanh(x @ p["enc"]))

        def loss(params, x):
            return jnp.sum(encoder(params, x) @ params["head"])

        params = {"enc": jnp.ones((3, 4)), "head": jnp.ones((4,))}
        g = jax.grad(loss)(params, jnp.ones((2, 3)))
        """)
    assert [(f.line, f.code) for f in got] == [(5, "GT301")]
    assert "`params.enc`" in got[0].message and "head" not in got[0].message


def test_jax_argnums_selecting_the_params_is_quiet_and_int_data_is_fine():
    assert codes("""
        import jax
        import jax.numpy as jnp

        def loss(x, ids, params):
            return jnp.sum(params["emb"][ids] * x)

        params = {"emb": jnp.ones((5, 2))}
        ids = jnp.array([0, 3])
        for _ in range(2):
            grads = jax.grad(loss, argnums=2)(jnp.ones((2, 2)), ids, params)
            params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
        """) == []


def test_jax_control_flow_under_grad_alone_is_quiet_but_under_jit_of_grad_is_an_error():
    source = """
        import jax
        import jax.numpy as jnp

        def f(x):
            if x.sum() > 0:
                return jnp.sum(x ** 2)
            return jnp.sum(x)

        g = {}(jax.grad(f))(jnp.ones(3))
        """
    assert codes(source.format("")) == []
    assert codes(source.format("jax.jit")) == [(5, "GT304")]


def test_analysis_stays_linear_on_a_large_file():
    block = textwrap.dedent("""
        def step_{i}(model, opt, x, y):
            with tf.GradientTape() as tape:
                h = helper_{i}(model(x))
                loss = tf.reduce_mean((h - y) ** 2)
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        def helper_{i}(h):
            return tf.nn.relu(h) * 2.0
        """)
    text = "import tensorflow as tf\n" + "".join(block.format(i=i) for i in range(300))
    start = time.perf_counter()
    result = check_source(text, "big.py")
    elapsed = time.perf_counter() - start
    assert not result.errors
    assert elapsed < 5.0, f"{elapsed:.2f}s for {text.count(chr(10))} lines"


def test_variables_created_once_per_training_routine_are_quiet_but_once_per_step_are_flagged():
    assert codes("""
        import tensorflow as tf

        def train(xs, ys, steps=10):
            w = tf.Variable(tf.zeros([2, 1]))
            opt = tf.keras.optimizers.SGD(0.1)
            for _ in range(steps):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean((tf.matmul(xs, w) - ys) ** 2)
                opt.apply_gradients(zip(tape.gradient(loss, [w]), [w]))
            return w

        def train_step(xs, ys, opt):
            w = tf.Variable(tf.zeros([2, 1]))
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((tf.matmul(xs, w) - ys) ** 2)
            opt.apply_gradients(zip(tape.gradient(loss, [w]), [w]))
            return loss
        """) == [(13, "GT201")]


def test_closures_see_the_enclosing_jit_trace():
    got = findings("""
        import jax
        import jax.numpy as jnp

        @jax.jit
        def step(params, x, y, lr):
            def loss_fn(p):
                return jnp.mean((x @ p["w"] - y) ** 2)
            loss, grads = jax.value_and_grad(loss_fn)(params)
            if loss > 10.0:
                lr = lr * 0.1
            return jax.tree_util.tree_map(lambda a, b: a - lr * b, params, grads), loss
        """)
    assert [(f.line, f.code) for f in got] == [(9, "GT304")]
    assert "jax.jit" in got[0].message


def test_outputs_of_jitted_functions_are_concrete_for_their_caller():
    assert codes("""
        import jax
        import jax.numpy as jnp

        @jax.jit
        def update(params, x):
            loss, grads = jax.value_and_grad(lambda p: jnp.sum((x @ p) ** 2))(params)
            return params - 0.1 * grads, loss

        params = jnp.ones(3)
        for _ in range(2):
            params, loss = update(params, jnp.ones((4, 3)))
            if float(loss) < 1e-3:
                break
        """) == []


def test_identity_tests_and_unbatched_vmap_arguments_are_not_traced():
    assert codes("""
        import jax
        import jax.numpy as jnp

        def core(q, mask, causal):
            if mask is None and not causal:
                return q
            return jnp.where(mask, q, 0.0)

        def attend(q, mask, causal):
            return jax.vmap(core, in_axes=(0, 0, None))(q, mask, causal)
        """) == []


def test_float_conversions_of_int_arrays_and_allow_int_are_quiet():
    assert codes("""
        import jax
        import jax.numpy as jnp

        f = lambda x: jnp.sum(x * 2.0)
        a = jax.grad(f)(jnp.array([1, 2, 3]).astype(jnp.float32))
        b = jax.grad(f)(jnp.float32(3))
        c = jax.grad(f, allow_int=True)(jnp.array([1, 2]))
        d = jax.grad(f)(jnp.arange(3) * 1.0)
        e = jax.grad(f)(jnp.array([1, 2]) / 2)
        """) == []
    assert codes("""
        import jax
        import jax.numpy as jnp

        f = lambda x: jnp.sum(x * 2.0)
        a = jax.grad(f)(jnp.arange(3))
        """) == [(5, "GT302")]


def test_keras_lambda_layers_run_their_function():
    got = findings("""
        import tensorflow as tf

        inputs = tf.keras.Input((4,))
        h = tf.keras.layers.Dense(8, activation="relu")(inputs)
        h = tf.keras.layers.Lambda(lambda t: tf.stop_gradient(t))(h)
        model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(h))
        x = tf.random.normal([8, 4])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        """)
    assert [(f.line, f.code) for f in got] == [(5, "GT203")]
    assert "The layer created on line 4" in got[0].message


def test_functions_with_their_own_gradient_are_not_cuts():
    assert codes("""
        import numpy as np
        import tensorflow as tf
        import jax
        import jax.numpy as jnp

        @tf.custom_gradient
        def np_tanh(x):
            y = tf.constant(np.tanh(x.numpy()))
            def grad(dy):
                return dy * (1.0 - y * y)
            return y, grad

        w = tf.Variable([0.5, 1.0])
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(np_tanh(w))
        g = tape.gradient(loss, w)

        @jax.custom_vjp
        def clip_gradient(x):
            return jax.lax.stop_gradient(x) * 1.0

        clip_gradient.defvjp(lambda x: (x, None), lambda _, g: (jnp.clip(g, -1.0, 1.0),))
        gj = jax.grad(lambda v: jnp.sum(clip_gradient(v) ** 2))(jnp.ones(3))
        """) == []


def test_a_tape_watched_through_a_helper_is_not_reported_as_unwatched():
    assert codes("""
        import tensorflow as tf

        def watch_all(tape, xs):
            for x in xs:
                tape.watch(x)

        a = tf.constant(1.0)
        b = tf.constant(2.0)
        with tf.GradientTape() as tape:
            watch_all(tape, [a, b])
            y = a * b
        ga, gb = tape.gradient(y, [a, b])
        """) == []


def test_item_assignment_only_on_values_known_to_be_jax_arrays():
    assert codes("""
        import jax
        import jax.numpy as jnp
        import mylib

        x = jnp.zeros(3)
        lst = x.tolist()
        lst[0] = 5
        h = jax.device_get(x)
        h[1] = 2.0
        b = mylib.to_host(x)
        b[0] = 1.0
        y = x.reshape(3, 1)
        y[0] = 1.0
        """) == [(13, "GT305")]


def test_train_steps_never_called_in_the_file_treat_called_parameters_as_models():
    assert codes("""
        import numpy as np
        import tensorflow as tf

        def reg_step(model, x, y, opt):
            with tf.GradientTape() as tape:
                pred = model(x)
                loss = tf.reduce_mean(np.square(pred - y))
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))

        def distill(student, teacher, x, opt, loss_fn):
            with tf.GradientTape() as tape:
                t = tf.stop_gradient(teacher(x))
                loss = loss_fn(t, student(x))
            grads = tape.gradient(loss, student.trainable_variables)
            opt.apply_gradients(zip(grads, student.trainable_variables))

        def frozen_features(backbone, head, x, y, variables):
            with tf.GradientTape() as tape:
                f = tf.stop_gradient(backbone(x))
                loss = tf.reduce_mean((head(f) - y) ** 2)
            return tape.gradient(loss, variables)
        """) == [(7, "GT204")]


def test_values_without_derivative_are_concrete_under_grad_alone():
    # argmax, stop_gradient, rounding and comparisons give concrete values under jax.grad (not under jit)
    source = """
        import jax
        import jax.numpy as jnp

        def f(x):
            k = int(jnp.argmax(x))
            scale = float(jnp.sum(jax.lax.stop_gradient(x)))
            n_pos = float((x > 0).sum())
            return x[k] * scale * n_pos

        g = {}(jax.grad(f))(jnp.array([1.0, 3.0, 2.0]))
        """
    assert codes(source.format("")) == []
    assert codes(source.format("jax.jit")) == [(5, "GT303"), (6, "GT303"), (7, "GT303")]


def test_methods_and_variables_come_from_same_file_base_classes():
    got = findings("""
        import tensorflow as tf

        class Base(tf.Module):
            def __init__(self):
                super().__init__()
                self.w = tf.Variable(tf.ones([3, 1]))
                self.b = tf.Variable(tf.zeros([1]))

        class Head(Base):
            def __call__(self, x):
                return tf.matmul(x, tf.stop_gradient(self.w)) + self.b

        m = Head()
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(m(tf.ones([2, 3])))
        grads = tape.gradient(loss, m.trainable_variables)
        """)
    assert [(f.line, f.code) for f in got] == [(11, "GT203")]
    assert ".w`" in got[0].message and ".b`" not in got[0].message


def test_jitted_functions_never_called_keep_their_python_defaults():
    assert codes("""
        import jax
        import jax.numpy as jnp

        @jax.jit
        def forward(params, x, training=True, dropout=0.1):
            h = jnp.tanh(x @ params["w"])
            if training and dropout > 0:
                h = h * (1.0 - dropout)
            return h

        @jax.jit
        def bad(params, x, flag):
            if flag:
                return x
            return x * 2
        """) == [(13, "GT304")]


def test_grad_functions_chosen_by_a_branch_never_crash_the_analysis():
    assert codes("""
        import jax
        import jax.numpy as jnp

        def loss(x, params):
            return jnp.sum(x @ params)

        def step(params, x, use_jit):
            g = jax.grad(loss)
            if use_jit:
                g = jax.jit(g)
            grads = g(x, params)
            return jax.tree_util.tree_map(lambda p, d: p - 0.1 * d, params, grads)

        def pick(a, b, first):
            h = jax.grad(loss) if first else jax.jit(jax.grad(loss, argnums=1))
            return h(a, b)
        """) == [(11, "GT306")]


def test_control_flow_on_traced_arrays_is_flagged_but_not_on_struct_fields():
    assert codes("""
        import jax
        import jax.numpy as jnp

        @jax.jit
        def step(state, x, flag):
            if state.scaler:
                x = x * 2.0
            if x.any():
                x = x - 1.0
            if flag:
                x = x + 1.0
            if jnp.sum(x) > 0:
                x = -x
            return x
        """) == [(8, "GT304"), (10, "GT304"), (12, "GT304")]
