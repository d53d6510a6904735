import tensorflow as tf

scale = tf.Variable(2.0)
offset = tf.Variable(0.5)
x = tf.random.normal([8])
with tf.GradientTape() as tape:
    y = tf.stop_gradient(x * scale) + offset  # CUT
    loss = tf.reduce_mean(y ** 2)
grads = tape.gradient(loss, [scale, offset])
