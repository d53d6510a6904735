import tensorflow as tf

grid = tf.constant([[0.0], [0.5], [1.0]])
with tf.GradientTape() as tape:
    u = tf.sin(grid) * 3.0
du = tape.gradient(u, grid)  # CUT
