"""GT203: `tf.stop_gradient` on the only path from trainable variables to the loss."""

from __future__ import annotations

from gradtrace.rules._messages import join_phrases
from gradtrace.rules.base import Invalid, Rule, Truth


def lost_message(facts, lost, sink_kind, cut_by: str, zero: bool = False) -> str:
    """"`w` gets no gradient: `tf.stop_gradient` cuts its only path to the loss."."""
    shown = facts.names(lost)
    names = join_phrases([n if n.startswith("the ") else f"`{n}`" for n in shown])
    one = len(shown) == 1
    where = "the layer's output" if sink_kind == "call" else "the loss"
    return (f"{names[0].upper()}{names[1:]} {'gets' if one else 'get'} {'a zero' if zero else 'no'} gradient: {cut_by} cuts "
            f"{'its' if one else 'their'} only path to {where}.")


class TFStopGradientOnlyPath(Rule):
    code = "GT203"
    name = "tf-stop-gradient-only-path"
    summary = "tf.stop_gradient cuts trainable variables from the loss on their only path."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `tf.stop_gradient(...)` when a trainable variable reaches the loss (the target of
    `tape.gradient`, or the output of a layer's `call`) *only* through it. Stopping the gradient of a
    target, of EM responsibilities or of a straight-through residual, where the variables still reach
    the loss by another path, stays quiet. What a `with tape.stop_recording():` block computes is cut the
    same way: the tape records none of it.

    A functional Keras model trained with `fit()` counts too: a `Lambda(lambda t: tf.stop_gradient(t))`
    layer cuts every layer upstream of it from the loss `fit` attaches to the output, unless another
    model built in the file trains those layers through its own output.

    ## Why is this bad?
    `stop_gradient` makes its input a constant for differentiation: every variable behind it gets
    `None` from `tape.gradient` and is never trained (Keras warns "Gradients do not exist for
    variables" at best).

    ## Example
    ```python
    with tf.GradientTape() as tape:
        h = tf.stop_gradient(tf.matmul(x, w)) + b
        loss = tf.reduce_sum(h ** 2)
    grads = tape.gradient(loss, [w, b])    # grads[0] is None
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        h = tf.matmul(x, w) + b
        loss = tf.reduce_sum(h ** 2)
    ```
    Apply `stop_gradient` only to the branch that must not train (a target, a statistic).

    ## Fix safety
    No automatic fix: whether the cut is intended is the author's call.
    """
    valid = (
        """
        import tensorflow as tf

        centers = tf.Variable([-1.0, 0.0, 1.0])
        w = tf.Variable([[0.3, -0.7]])
        with tf.GradientTape() as tape:
            soft = tf.reduce_sum(tf.nn.softmax(-tf.abs(tf.expand_dims(w, -1) - centers)) * centers, -1)
            hard = tf.gather(centers, tf.argmin(tf.abs(tf.expand_dims(w, -1) - centers), -1))
            quantized = tf.round(tf.stop_gradient(hard - soft) + soft)
            loss = tf.reduce_sum(quantized ** 2)
        grads = tape.gradient(loss, [w, centers])
        """,
        """
        import numpy as np
        import tensorflow as tf
        from tensorflow import keras

        image = keras.Input((6,))
        code = keras.layers.Dense(3, name="encoder")(image)
        recon = keras.layers.Dense(6)(code)
        autoencoder = keras.Model(image, recon)
        frozen = keras.layers.Lambda(lambda t: tf.stop_gradient(t))(code)
        probe = keras.Model(image, keras.layers.Dense(2)(frozen))
        autoencoder.compile(optimizer="sgd", loss="mse")
        probe.compile(optimizer="sgd", loss="mse")
        x = np.ones((4, 6), "float32")
        autoencoder.fit(x, x, verbose=0)
        probe.fit(x, np.zeros((4, 2), "float32"), verbose=0)
        """,
        """
        import tensorflow as tf

        w = tf.Variable([[0.5], [-0.3]])
        x = tf.constant([[1.0, 2.0]])
        with tf.GradientTape() as tape:
            pred = tf.matmul(x, w)
            target = tf.stop_gradient(pred * 0.9 + 1.0)
            loss = tf.reduce_sum((pred - target) ** 2)
        grads = tape.gradient(loss, [w])
        """,
        """
        import tensorflow as tf

        w = tf.Variable([0.3, 1.7])
        with tf.GradientTape() as tape:
            q = w + tf.stop_gradient(tf.round(w) - w)
            loss = tf.reduce_sum(q ** 2)
        g = tape.gradient(loss, w)
        """,
        """
        import keras
        import tensorflow as tf


        class Quantizer(keras.layers.Layer):
            def __init__(self, codes, dim):
                super().__init__()
                self.codebook = self.add_weight(shape=(dim, codes), initializer="random_uniform")

            def call(self, x):
                index = tf.argmin(tf.matmul(x, self.codebook), axis=1)
                quantized = tf.matmul(tf.one_hot(index, tf.shape(self.codebook)[1]), self.codebook, transpose_b=True)
                self.add_loss(tf.reduce_mean((quantized - tf.stop_gradient(x)) ** 2))
                return x + tf.stop_gradient(quantized - x)


        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(2)(Quantizer(8, 4)(keras.layers.Dense(4)(inputs))))
        optimizer = keras.optimizers.SGD(0.1)
        x = tf.random.normal((16, 4))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x) ** 2) + sum(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf

            w = tf.Variable([[0.5], [-0.3]])
            b = tf.Variable([0.1])
            x = tf.constant([[1.0, 2.0]])
            with tf.GradientTape() as tape:
                h = tf.stop_gradient(tf.matmul(x, w)) + b  # expect: GT203
                loss = tf.reduce_sum(h ** 2)
            grads = tape.gradient(loss, [w, b])
            """,
            truth=Truth(grads={"grads[0]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            class Gain(tf.keras.layers.Layer):
                def build(self, input_shape):
                    self.g = self.add_weight(shape=(input_shape[-1],), initializer="ones")

                def call(self, x):
                    return x * tf.stop_gradient(self.g)  # expect: GT203

            layer = Gain()
            x = tf.ones([2, 3])
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(x))
            grads = tape.gradient(loss, layer.trainable_weights)
            """,
            truth=Truth(grads={"grads[0]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import numpy as np
            import tensorflow as tf
            from tensorflow import keras

            tokens = keras.Input((4,), dtype="int32")
            emb = keras.layers.Embedding(10, 3, name="embed")(tokens)
            pooled = keras.layers.GlobalAveragePooling1D()(emb)
            pooled = keras.layers.Lambda(lambda t: tf.stop_gradient(t))(pooled)  # expect: GT203
            logits = keras.layers.Dense(2)(pooled)
            model = keras.Model(tokens, logits)
            model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            before = model.get_layer("embed").embeddings.numpy().copy()
            model.fit(np.arange(8).reshape(2, 4) % 10, np.array([0, 1]), epochs=2, verbose=0)
            change = model.get_layer("embed").embeddings.numpy() - before
            """,
            truth=Truth(grads={"change": "zero"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            query_tower = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])
            doc_tower = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])
            q, d = tf.random.normal([8, 4]), tf.random.normal([8, 4])
            with tf.GradientTape() as tape:
                q_emb = query_tower(q)
                with tape.stop_recording():  # expect: GT203
                    d_emb = doc_tower(d)
                loss = tf.reduce_mean(tf.matmul(q_emb, d_emb, transpose_b=True))
            grads = tape.gradient(loss, doc_tower.trainable_variables)
            """,
            truth=Truth(grads={"grads[0]": "none", "grads[1]": "none"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for lc in facts.lost_cuts.values():
            if lc.cut.kind != "stop_gradient":
                continue
            msg = lost_message(facts, lc.lost, lc.sink_kind, f"`{lc.cut.op}`")
            yield ctx.report(lc.cut.node, msg,
                             data={"lost": facts.names(lc.lost), "op": lc.cut.op})
