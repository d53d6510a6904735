import tensorflow as tf

weight = tf.Variable([[1.0], [2.0]])
bias = tf.Variable(1)  # CUT
x = tf.random.normal([5, 2])
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x @ weight + tf.cast(bias, tf.float32))
grads = tape.gradient(loss, [weight, bias])
