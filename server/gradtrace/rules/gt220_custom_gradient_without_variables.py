"""GT220: a @tf.custom_gradient function reads variables, but its gradient function takes no `variables`."""

from __future__ import annotations

from gradtrace.rules._messages import join_phrases
from gradtrace.rules.base import Invalid, Rule, Truth


class CustomGradientWithoutVariables(Rule):
    code = "GT220"
    name = "custom-gradient-without-variables"
    summary = "A @tf.custom_gradient function reads variables, but its gradient function does not take `variables`."
    severity = "error"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags the gradient function of a `@tf.custom_gradient` function that computes with trainable variables
    it reads itself (a layer's `self.kernel`, a closure's variable), when that gradient function takes no
    `variables` keyword argument.

    ## Why is this bad?
    When the decorated function uses variables, TensorFlow asks its gradient function for their
    gradients too: it calls `grad(dy, variables=[...])` and expects `(input grads, variable grads)` back.
    A gradient function without that argument makes the forward call raise TypeError ("If using
    @custom_gradient with a function that uses variables, then grad_fn must accept a keyword argument
    'variables'"), so the layer cannot train.

    ## Example
    ```python
    @tf.custom_gradient
    def affine(x):
        out = x @ self.kernel
        def grad(dy):
            return dy @ tf.transpose(self.kernel)
        return out, grad
    ```

    ## Use instead
    ```python
        def grad(dy, variables=None):
            return dy @ tf.transpose(self.kernel), [tf.transpose(x) @ dy]
    ```

    ## Fix safety
    No automatic fix: the variables' gradients must be written.
    """
    valid = (
        """
        import tensorflow as tf


        @tf.custom_gradient
        def clip_grad(x):
            def grad(dy):
                return tf.clip_by_norm(dy, 1.0)
            return tf.identity(x), grad


        w = tf.Variable(tf.ones([3, 1]))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(clip_grad(tf.ones([2, 3]) @ w))
        g = tape.gradient(loss, w)
        """,
        """
        import tensorflow as tf

        w = tf.Variable(tf.ones([3, 1]))


        @tf.custom_gradient
        def affine(x):
            out = x @ w

            def grad(dy, variables=None):
                return dy @ tf.transpose(w), [tf.transpose(x) @ dy]
            return out, grad


        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(affine(tf.ones([2, 3])))
        g = tape.gradient(loss, w)
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf


            class ClippedDense(tf.keras.layers.Layer):
                def build(self, input_shape):
                    self.kernel = self.add_weight(shape=(input_shape[-1], 2), initializer="ones")

                def call(self, x):
                    @tf.custom_gradient
                    def affine(inp):
                        out = inp @ self.kernel

                        def grad(dy):  # expect: GT220
                            return tf.clip_by_norm(dy, 1.0) @ tf.transpose(self.kernel)
                        return out, grad

                    return affine(x)


            layer = ClippedDense()
            x = tf.ones([4, 3])
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(x))
            """,
            truth=Truth(raises=("TypeError", "variables"), framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for fn, (grad_fn, read) in facts.custom_gradients.items():
            names = join_phrases([f"`{n}`" for n in facts.names(read)[:3]])
            yield ctx.report(
                grad_fn,
                f"`{fn.name}` computes with {names}, so TensorFlow calls `{grad_fn.name}` with `variables=`: "
                "without that argument the call raises TypeError.",
                data={"lost": facts.names(read)},
            )
