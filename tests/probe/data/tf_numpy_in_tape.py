import numpy as np
import tensorflow as tf

w = tf.Variable(tf.ones([3, 2]))
v = tf.Variable(tf.ones([2, 1]))
x = tf.random.normal([4, 3])
with tf.GradientTape() as tape:
    h = np.tanh((x @ w).numpy())  # CUT
    loss = tf.reduce_sum(tf.convert_to_tensor(h) @ v)
grads = tape.gradient(loss, [w, v])
