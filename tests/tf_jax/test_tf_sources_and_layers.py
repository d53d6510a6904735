"""TensorFlow: variable lists built in pieces, losses computed after the tape, attributes rebound to
tensors, gradients applied to other variables, and Keras layers whose output `call` drops."""

from __future__ import annotations

import textwrap

from gradtrace.engine import check_source


def codes(code: str) -> list[tuple[int, str]]:
    result = check_source(textwrap.dedent(code).lstrip("\n"), "example.py")
    assert not result.errors, result.errors
    return sorted((f.line, f.code) for f in result.findings if f.severity in ("warning", "error"))


def test_non_trainable_variables_are_found_in_lists_built_by_unpacking_and_extend():
    assert codes("""
        import tensorflow as tf

        model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
        a = tf.Variable(1.0, trainable=False)
        b = tf.Variable(1.0, trainable=False)
        c = tf.Variable(1.0, trainable=False)
        first = [*model.trainable_variables, a]
        second = []
        second.extend([b])
        with tf.GradientTape(persistent=True) as tape:
            loss = tf.reduce_mean(model(tf.ones([3, 2]))) * a * b * c
        g1 = tape.gradient(loss, first)
        g2 = tape.gradient(loss, second)
        g3 = tape.gradient(loss, model.trainable_variables)
        """) == [(4, "GT208"), (5, "GT208")]


def test_an_operation_after_the_tape_is_flagged_but_renaming_and_metrics_are_not():
    assert codes("""
        import tensorflow as tf

        model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
        x = tf.ones([3, 2])


        def mse(pred):
            return tf.reduce_mean(pred ** 2)


        def step():
            with tf.GradientTape() as tape:
                pred = model(x)
            loss = mse(pred)
            return tape.gradient(loss, model.trainable_variables)


        def fine():
            with tf.GradientTape() as tape:
                pred = model(x)
                loss = mse(pred)
            metric = mse(pred)
            total = loss
            if metric is None:
                total = loss
            return tape.gradient(total, model.trainable_variables)


        def reentered():
            tape = tf.GradientTape(persistent=True)
            with tape:
                pred = model(x)
            with tape:
                loss = mse(pred)
            return tape.gradient(loss, model.trainable_variables)
        """) == [(14, "GT212")]


def test_attribute_rebinding_is_flagged_only_for_variables_the_method_differentiates():
    assert codes("""
        import tensorflow as tf


        class Model:
            def __init__(self):
                self.w = tf.Variable(1.0)
                self.temperature = tf.Variable(1.0)

            def step(self, x):
                with tf.GradientTape() as tape:
                    loss = (self.w * x / self.temperature) ** 2
                g = tape.gradient(loss, self.w)
                self.w -= 0.1 * g
                self.temperature = self.temperature * 0.9
                return loss
        """) == [(13, "GT211")]


def test_gradients_applied_to_another_factory_built_model_are_flagged():
    assert codes("""
        import tensorflow as tf


        def build(units):
            return tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(units)])


        online = build(1)
        target = build(1)
        opt = tf.keras.optimizers.SGD(0.1)
        x = tf.ones([3, 2])
        for _ in range(2):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((online(x) - tf.stop_gradient(target(x))) ** 2)
            grads = tape.gradient(loss, online.trainable_variables)
            opt.apply_gradients(zip(grads, online.trainable_variables))
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((online(x) - target(x)) ** 2)
            grads = tape.gradient(loss, online.trainable_variables)
            opt.apply_gradients(zip(grads, target.trainable_variables))
        """) == [(19, "GT214")]


def test_a_layer_whose_output_call_drops_is_flagged_and_indirect_uses_are_not():
    assert codes("""
        import tensorflow as tf
        from tensorflow import keras


        class Inner(keras.layers.Layer):
            def __init__(self):
                super().__init__()
                self.d = keras.layers.Dense(4)

            def call(self, x):
                return self.d(x)


        class Net(keras.Model):
            def __init__(self):
                super().__init__()
                self.enc = keras.layers.Dense(8)
                self.gate = keras.layers.Dense(8, activation="sigmoid")
                self.score = keras.layers.Dense(1)
                self.blocks = [keras.layers.Dense(8) for _ in range(2)]
                self.inner = Inner()
                self.aux = keras.layers.Dense(1)
                self.extra = keras.layers.Dense(1)
                self.probe = keras.layers.Dense(1)
                self.drop = keras.layers.Dropout(0.1)

            def gated(self, x):
                return self.enc(x) * self.gate(x)

            def call(self, x, training=False):
                h = self.gated(x)
                for blk in self.blocks:
                    h = blk(h)
                h = tf.where(self.score(h) > 0, h, 0.0)
                self.add_loss(tf.reduce_mean(self.aux(h)))
                unused = self.probe(h)
                dropped = self.drop(h, training=training)
                return self.inner(h)  # `self.probe` (line 24) is read, but its output is dropped

            def train_step(self, data):
                return self.extra(data)


        class Mapped(keras.layers.Layer):
            def __init__(self):
                super().__init__()
                self.proj = keras.layers.Dense(4)
                self.lost = keras.layers.Dense(4)

            def call(self, x):
                y = self.lost(x)
                return tf.map_fn(lambda t: self.proj(t), x)
        """) == [(24, "GT210"), (34, "GT206")]  # `self.score` is read, but only through a comparison: no gradient
