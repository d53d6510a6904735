"""GT213: a value reaches the loss only through `variable.assign(...)` inside the tape."""

from __future__ import annotations

from gradtrace.rules.base import Invalid, Rule, Truth
from gradtrace.rules.gt203_tf_stop_gradient_only_path import lost_message


class AssignInsideTape(Rule):
    code = "GT213"
    name = "assign-inside-tape"
    summary = "Stateful variable.assign() inside the tape: the assigned value's variables get no gradient."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `v.assign(expr)`, `assign_add` and `assign_sub` inside a `GradientTape` (also in a layer's
    `call` that runs under it, `self.w.assign(x)`) and `model.set_weights(values)` when trainable
    variables or watched tensors in `expr` reach the loss only through what was assigned.

    ## Why is this bad?
    Tapes do not record assignments to variables: reading `v` afterwards has no path back to `expr`,
    so the variables in `expr` get `None`.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        state.assign(w * x)
        loss = tf.reduce_sum(state ** 2)
    tape.gradient(loss, w)     # None
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        h = w * x
        loss = tf.reduce_sum(h ** 2)
    state.assign(h)
    ```

    ## Fix safety
    No automatic fix: keep intermediate state in plain tensors.
    """
    valid = (
        """
        import tensorflow as tf

        w = tf.Variable(2.0)
        state = tf.Variable(0.0, trainable=False)
        with tf.GradientTape() as tape:
            h = w * 3.0
            loss = h ** 2
        state.assign(h)
        g = tape.gradient(loss, w)
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf

            inputs = tf.keras.Input((2,))
            net = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(inputs))
            temperature = tf.Variable(0.5)
            with tf.GradientTape() as tape:
                net.set_weights([w * temperature for w in net.weights])  # expect: GT213
                loss = tf.reduce_sum(net(tf.ones([3, 2])))
            grad = tape.gradient(loss, temperature)
            """,
            truth=Truth(grads={"grad": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            class Memory(tf.keras.layers.Layer):
                def build(self, input_shape):
                    self.slot = self.add_weight(shape=(input_shape[-1],), initializer="zeros", trainable=False)

                def call(self, h):
                    self.slot.assign(tf.reduce_mean(h, axis=0))  # expect: GT213
                    return tf.ones([2, 1]) * tf.reduce_sum(self.slot)

            encoder = tf.keras.layers.Dense(3)
            memory = Memory()
            with tf.GradientTape() as tape:
                out = memory(encoder(tf.ones([2, 4])))
            grads = tape.gradient(out, encoder.trainable_variables)
            """,
            truth=Truth(grads={"grads[0]": "none", "grads[1]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            w = tf.Variable(2.0)
            state = tf.Variable(0.0, trainable=False)
            with tf.GradientTape() as tape:
                state.assign(w * 3.0)  # expect: GT213
                loss = state ** 2
            g = tape.gradient(loss, w)
            """,
            truth=Truth(grads={"g": "none"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for lc in facts.lost_cuts.values():
            if lc.cut.kind != "assign":
                continue
            msg = lost_message(facts, lc.lost, lc.sink_kind, f"`{lc.cut.op}`, which the tape does not record,")
            yield ctx.report(lc.cut.node, msg,
                             data={"lost": facts.names(lc.lost), "op": lc.cut.op})
