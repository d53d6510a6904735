"""Shapes of the bugs public reports show, written differently from the rule examples: where the finding
lands, and the correct counterparts that stay quiet."""

from __future__ import annotations

import textwrap

from tests.tf_jax.test_flow import codes

# a training step that gets the model's output by keyword: the forward pass runs before its tape
KEYWORD_STEP = """
        import tensorflow as tf

        model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])

        def step(y, logits=None):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((logits - y) ** 2)
            return tape.gradient(loss, model.trainable_variables)
"""


def test_forward_pass_passed_by_keyword_is_blamed_where_the_caller_computes_it():
    assert codes(KEYWORD_STEP + """
        out = model(tf.ones([2, 3]))
        grads = step(tf.zeros([2, 1]), logits=out)
        """) == [(10, "GT212")]


def test_forward_pass_passed_inline_is_blamed_at_the_argument():
    assert codes(KEYWORD_STEP + """
        grads = step(tf.zeros([2, 1]),
                     logits=model(tf.ones([2, 3])))
        """) == [(11, "GT212")]


def test_inputs_passed_in_and_model_run_under_the_tape_stay_quiet():
    assert codes("""
        import tensorflow as tf

        model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])

        def step(x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((model(x) - y) ** 2)
            return tape.gradient(loss, model.trainable_variables)

        grads = step(tf.ones([2, 3]), tf.zeros([2, 1]))
        """) == []


SIGN = """
import jax
import pytest

@jax.jit
def sign(x):
    if x > 0:
        return 1.0
    return -1.0
"""


def test_errors_provoked_under_pytest_raises_or_a_handled_try_are_not_reported():
    assert codes(SIGN + textwrap.dedent("""
        def test_branching_raises():
            with pytest.raises(jax.errors.TracerBoolConversionError):
                sign(2.0)

        def probe(value):
            try:
                return sign(value)
            except jax.errors.ConcretizationTypeError:
                return None
        """)) == []


def test_the_same_branch_called_outside_any_handler_is_reported():
    assert codes(SIGN + "y = sign(2.0)\n") == [(6, "GT304")]


def test_predict_of_a_functional_model_under_the_tape_is_a_numpy_conversion():
    assert codes("""
        import tensorflow as tf

        inputs = tf.keras.Input((4,))
        net = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(inputs))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(net.predict_on_batch(tf.ones([3, 4])) ** 2)
        grads = tape.gradient(loss, net.trainable_variables)
        """) == [(6, "GT204")]


def test_haiku_style_loss_that_ignores_its_params_is_reported_at_its_return():
    assert codes("""
        import jax
        import jax.numpy as jnp

        def forward(params, x):
            return jnp.dot(x, params["w"])

        def loss_fn(params, batch):
            x, y = batch
            logits = forward(params, x)
            return jnp.mean((y - 1.0) ** 2)

        grads = jax.grad(loss_fn)({"w": jnp.ones((3, 2))}, (jnp.ones((4, 3)), jnp.zeros((4, 2))))
        """) == [(10, "GT311")]


def test_loss_reading_its_params_through_a_pytree_helper_stays_quiet():
    assert codes("""
        import jax
        import jax.numpy as jnp

        def l2(tree):
            return sum(jnp.sum(p ** 2) for p in jax.tree_util.tree_leaves(tree))

        def loss_fn(params, x):
            return l2(params) + jnp.mean(x)

        grads = jax.grad(loss_fn)({"w": jnp.ones(3)}, jnp.ones(4))
        """) == []
