import numpy as np
import tensorflow as tf


class Gate(tf.keras.layers.Layer):
    def build(self, input_shape):
        self.alpha = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="alpha")

    def call(self, x):
        return x * tf.stop_gradient(self.alpha)  # CUT


model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(4), Gate(), tf.keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
x, y = np.random.rand(16, 3).astype("float32"), np.random.rand(16, 1).astype("float32")
model.fit(x, y, epochs=1, batch_size=8, verbose=0)
