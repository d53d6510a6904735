import tensorflow as tf


class Affine(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.ones([2, 2]))
        self.extra = tf.Variable(tf.zeros([2]))  # CUT

    def __call__(self, x):
        return x @ self.w


layer = Affine()
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(layer(tf.ones([3, 2])))
grads = tape.gradient(loss, layer.trainable_variables)
