"""`model.trainable_variables` of a Keras model holds what its own layers made in `build` (a custom layer whose
inner Dense is created when Keras first calls it): a gradient taken with respect to them is connected, not
"every gradient is None". A layer of the model that its `__call__` never uses is still reported (Keras never
builds it: it has nothing to train). Checked with TensorFlow."""

from __future__ import annotations

import os
import textwrap

import pytest
from gradtrace.engine import check_source

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CUSTOM_LAYERS = textwrap.dedent("""
    import tensorflow as tf
    from tensorflow.keras import Model, layers


    class Scale(layers.Layer):
        def build(self, input_shape):
            self.weight = self.add_weight(name="w", shape=(input_shape[-1],), initializer="ones")

        def call(self, inputs):
            return inputs * self.weight


    class Residual(layers.Layer):
        def build(self, input_shape):
            self.inner = layers.Dense(input_shape[-1])

        def call(self, inputs):
            return inputs + self.inner(inputs)


    class Net(Model):
        def __init__(self):
            super().__init__()
            self.scale = Scale()
            self.block = Residual()
            self.out = layers.Dense(2)

        def __call__(self, x):
            return self.block(self.scale(x))


    net = Net()
    optimizer = tf.keras.optimizers.SGD(0.1)
    x = tf.ones([4, 3])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(net(x) ** 2)
    gradients = tape.gradient(loss, net.trainable_variables)
    optimizer.apply_gradients(zip(gradients, net.trainable_variables))
""").lstrip()


def codes(source: str) -> set[tuple[str, int]]:
    return {(f.code, f.line) for f in check_source(source, "net.py").findings if f.severity in ("warning", "error")}


def test_variables_made_in_build_count_as_the_models():
    found = codes(CUSTOM_LAYERS)
    assert not any(code == "GT214" for code, _ in found)
    assert ("GT210", CUSTOM_LAYERS.splitlines().index("        self.out = layers.Dense(2)") + 1) in found


def test_tensorflow_gives_the_build_made_variables_a_gradient():
    pytest.importorskip("tensorflow", reason="tensorflow is a dev dependency: scripts/test.sh installs it")
    namespace: dict = {}
    exec(compile(CUSTOM_LAYERS, "<net>", "exec"), namespace)
    grads = dict(zip((v.path for v in namespace["net"].trainable_variables), namespace["gradients"]))
    # the scale's weight and the inner Dense's kernel and bias, all with a gradient; `out`, never called, was never
    # built: it has no variables to train
    assert len(grads) == 3 and all(grad is not None for grad in grads.values())
    assert not namespace["net"].out.built
