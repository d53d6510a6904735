"""GT215: a Keras metric's result used as the loss: metrics are not differentiable."""

from __future__ import annotations

from gradtrace.rules.base import Invalid, Rule, Truth
from gradtrace.rules.gt203_tf_stop_gradient_only_path import lost_message


class MetricResultDifferentiated(Rule):
    code = "GT215"
    name = "metric-result-differentiated"
    summary = "The loss is a Keras metric's result(): metric state is not differentiable, every gradient is None."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `metric.result()` and `metric(y, pred)` on a Keras metric object (`tf.keras.metrics.Mean`,
    `MeanSquaredError`, ...) when the value it returns is on the only path from trainable variables to
    the target of `tape.gradient`. Updating a metric with the loss and reporting `result()` next to
    the gradient step stays quiet.

    ## Why is this bad?
    A metric accumulates into its own non-trainable variables with `assign_add`, and `result()` reads
    them back: the tape records no path from the model's variables to that value, so every gradient
    is `None` and `apply_gradients` raises "No gradients provided for any variable".

    ## Example
    ```python
    with tf.GradientTape() as tape:
        train_loss.update_state(loss_fn(y, model(x)))
        objective = train_loss.result()
    grads = tape.gradient(objective, model.trainable_variables)
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x))
    grads = tape.gradient(loss, model.trainable_variables)
    train_loss.update_state(loss)
    ```
    Use `tf.keras.losses.*` (not `tf.keras.metrics.*` classes) for a loss object.

    ## Fix safety
    No automatic fix: the loss has to be computed by a differentiable function.
    """
    valid = (
        """
        import tensorflow as tf

        w = tf.Variable([1.0, 2.0])
        tracker = tf.keras.metrics.Mean()
        mse = tf.keras.losses.MeanSquaredError()
        with tf.GradientTape() as tape:
            loss = mse(tf.zeros([2]), w * 2.0)
            tracker.update_state(loss)
        g = tape.gradient(loss, w)
        report = tracker.result()
        """,
        """
        import tensorflow as tf

        w = tf.Variable([1.0, 2.0])
        with tf.GradientTape() as tape:
            loss = tf.keras.metrics.mean_squared_error(tf.zeros([2]), w * 2.0)
        g = tape.gradient(loss, w)
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf

            w = tf.Variable([1.0, 2.0])
            tracker = tf.keras.metrics.Mean()
            with tf.GradientTape() as tape:
                tracker.update_state(tf.reduce_sum((w * 2.0 - 1.0) ** 2))
                objective = tracker.result()  # expect: GT215
            g = tape.gradient(objective, w)
            """,
            truth=Truth(grads={"g": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            w = tf.Variable([1.0, 2.0])
            mse = tf.keras.metrics.MeanSquaredError()
            with tf.GradientTape() as tape:
                loss = mse(tf.zeros([2]), w * 2.0)  # expect: GT215
            g = tape.gradient(loss, w)
            """,
            truth=Truth(grads={"g": "none"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for lc in facts.lost_cuts.values():
            if lc.cut.kind != "metric":
                continue
            msg = lost_message(facts, lc.lost, lc.sink_kind, f"the metric state `{lc.cut.op}`")
            yield ctx.report(lc.cut.node, msg,
                             data={"lost": facts.names(lc.lost), "op": lc.cut.op})
