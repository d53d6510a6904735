"""GT205: an integer tf.Variable used as a gradient source or handed to the optimizer."""

from __future__ import annotations

from gradtrace.analysis.frameworks.common import call_argument
from gradtrace.analysis.tfjax_fixes import float_literal_fix
from gradtrace.rules.base import Invalid, Rule, Truth


class IntegerVariable(Rule):
    code = "GT205"
    name = "integer-variable"
    summary = "A tf.Variable with an integer dtype is differentiated or optimized: its gradient is always None."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `tf.Variable(0)`, `tf.Variable([1, 2])` or `tf.Variable(..., dtype=tf.int32)` when the variable
    is a source of `tape.gradient`, is handed to an optimizer, or is cast to float inside a tape or a
    layer's `call` (used as a parameter). Integer counters that are never differentiated
    (`step = tf.Variable(0, trainable=False)`, `calls.assign_add(1)`) stay quiet.

    ## Why is this bad?
    Tapes only watch floating-point tensors, so an integer variable's gradient is always `None`.
    `tf.Variable(0)` is `int32`, and TensorFlow logs "The dtype of the watched tensor must be
    floating". A
    `tf.cast` to float in the model does not help: the cast output is a new tensor with no path back to
    the variable. Give the variable a float initial value or dtype.

    ## Example
    ```python
    intercept = tf.Variable(0)
    ```

    ## Use instead
    ```python
    intercept = tf.Variable(0.0)
    ```

    ## Fix safety
    The fix turns integer literals of the initial value into float literals (`0` → `0.0`). It is
    safe: the variable is meant to be trained, which requires a floating dtype.
    """
    valid = (
        """
        import tensorflow as tf

        step = tf.Variable(0, trainable=False)
        w = tf.Variable(1.0)
        with tf.GradientTape() as tape:
            loss = w * w
        g = tape.gradient(loss, [w])
        step.assign_add(1)
        """,
        """
        import tensorflow as tf

        calls = tf.Variable(0)
        calls.assign_add(1)
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf

            slope = tf.Variable(0.5)
            offset = tf.Variable(1)  # expect: GT205
            x = tf.constant([1.0, 2.0, 3.0])
            with tf.GradientTape() as tape:
                pred = slope * x + tf.cast(offset, tf.float32)
                loss = tf.reduce_mean((pred - 2.0) ** 2)
            grads = tape.gradient(loss, [slope, offset])
            """,
            fixed="""
            import tensorflow as tf

            slope = tf.Variable(0.5)
            offset = tf.Variable(1.0)  # expect: GT205
            x = tf.constant([1.0, 2.0, 3.0])
            with tf.GradientTape() as tape:
                pred = slope * x + tf.cast(offset, tf.float32)
                loss = tf.reduce_mean((pred - 2.0) ** 2)
            grads = tape.gradient(loss, [slope, offset])
            """,
            truth=Truth(grads={"grads[1]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            class Shift(tf.Module):
                def __init__(self):
                    super().__init__()
                    self.offset = tf.Variable(0)  # expect: GT205

                def __call__(self, x):
                    return x + tf.cast(self.offset, tf.float32)

            shift = Shift()
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(shift(tf.ones([3])) ** 2)
            grads = tape.gradient(loss, shift.trainable_variables)
            """,
            fixed="""
            import tensorflow as tf

            class Shift(tf.Module):
                def __init__(self):
                    super().__init__()
                    self.offset = tf.Variable(0.0)  # expect: GT205

                def __call__(self, x):
                    return x + tf.cast(self.offset, tf.float32)

            shift = Shift()
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(shift(tf.ones([3])) ** 2)
            grads = tape.gradient(loss, shift.trainable_variables)
            """,
            truth=Truth(grads={"grads[0]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf
            from keras import layers, ops


            class IntDense(layers.Layer):
                def build(self, input_shape):
                    self.w = self.add_weight(shape=(input_shape[-1], 2), initializer="ones", dtype="int32",  # expect: GT205
                                             trainable=True)

                def call(self, x):
                    return ops.matmul(x, ops.cast(self.w, x.dtype))


            layer = IntDense()
            x = tf.ones([3, 4])
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(x))
            g = tape.gradient(loss, layer.w)
            """,
            truth=Truth(grads={"g": "none"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for info in facts.variables.values():
            if info.dtype != "int" or not info.trainable or not (info.listed or info.cast_in_tape):
                continue
            name = info.name or "this variable"
            fix = None
            if call_argument(info.node, "dtype") is None:
                fix = float_literal_fix(ctx, call_argument(info.node, "initial_value", 0), f"`{name}`")
            yield ctx.report(
                info.node,
                f"`{name}` is an integer {'tf.Variable' if info.raw else 'weight'}: its gradient is always None.",
                fix=fix,
                data={"lost": [name]},
            )
