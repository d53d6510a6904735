"""GT214: tape.gradient asks for the variables of a model that the target never used."""

from __future__ import annotations

import ast

from gradtrace.analysis.core.values import covered
from gradtrace.rules._messages import join_phrases
from gradtrace.rules.base import Invalid, Rule, Truth


class GradientOfUnrelatedModel(Rule):
    code = "GT214"
    name = "gradient-of-unrelated-model"
    summary = "tape.gradient differentiates w.r.t. a model's variables, but the loss was computed with another model."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `tape.gradient(loss, other.trainable_variables)` when `loss` depends on trainable variables
    but on none of `other`'s — typically a copy (`clone_model`), a freshly built model, or the wrong
    network of a pair. Also flags `tape.gradient(loss, teacher.trainable_variables)` whose result
    `apply_gradients` pairs with other variables (`zip(grads, student.trainable_variables)`), each
    model built by its own call of a factory counting as a model of its own.

    ## Why is this bad?
    Every gradient is `None`: the optimizer skips all of them (or raises "No gradients provided for
    any variable"), and the model that produced the loss is not trained either. Gradients applied to
    other variables than the ones differentiated update those with gradients that are not theirs
    (silently, when the shapes match) and leave the differentiated model unchanged.

    ## Example
    ```python
    copy = tf.keras.models.clone_model(model)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x))
    grads = tape.gradient(loss, copy.trainable_variables)
    ```

    ## Use instead
    ```python
    grads = tape.gradient(loss, model.trainable_variables)
    ```

    ## Fix safety
    No automatic fix: which model should train is the author's call.
    """
    valid = (
        """
        import tensorflow as tf

        model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
        x = tf.ones([4, 2])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        """,
        """
        import tensorflow as tf


        def make_net():
            return tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])


        teacher = make_net()
        student = make_net()
        opt = tf.keras.optimizers.SGD(0.5)
        x = tf.ones([4, 2])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((student(x) - 2.0 * teacher(x)) ** 2)
        params = student.trainable_variables
        grads = tape.gradient(loss, params)
        opt.apply_gradients(zip(grads, student.trainable_variables))
        """,
        """
        import tensorflow as tf


        class Residual(tf.keras.layers.Layer):
            def build(self, input_shape):
                self.inner = tf.keras.layers.Dense(input_shape[-1])

            def call(self, x):
                return x + self.inner(x)


        class Net(tf.keras.Model):
            def __init__(self):
                super().__init__()
                self.block = Residual()

            def __call__(self, x):
                return self.block(x)


        net = Net()
        x = tf.ones([4, 3])
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(net(x))
        grads = tape.gradient(loss, net.trainable_variables)
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf


            def build():
                return tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])


            class Trainer:
                def __init__(self):
                    self.model = build()
                    self.target = build()

                def step(self, x):
                    with tf.GradientTape() as tape:
                        loss = tf.reduce_mean(self.model(x) ** 2)
                    return tape.gradient(loss, self.target.trainable_variables)  # expect: GT214


            grads = Trainer().step(tf.ones([4, 3]))
            """,
            truth=Truth(grads={"grads[0]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
            copy = tf.keras.models.clone_model(model)
            x = tf.ones([4, 2])
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x) ** 2)
            grads = tape.gradient(loss, copy.trainable_variables)  # expect: GT214
            """,
            truth=Truth(grads={"grads[0]": "none"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf


            def make_net():
                return tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1, kernel_initializer="ones")])


            teacher = make_net()
            student = make_net()
            opt = tf.keras.optimizers.SGD(0.5)
            x = tf.ones([4, 2])
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((student(x) - 2.0 * teacher(x)) ** 2)
            grads = tape.gradient(loss, teacher.trainable_variables)  # expect: GT214
            opt.apply_gradients(zip(grads, student.trainable_variables))
            """,
            truth=Truth(grads={"teacher.trainable_variables[0] - 1.0": "zero",
                               "teacher.trainable_variables[1]": "zero",
                               "student.trainable_variables[0] - (1.0 - 0.5 * grads[0])": "zero"},
                        framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf

            norm = tf.keras.layers.Dense(3)
            classifier = tf.keras.layers.Dense(1)
            norm.build((None, 3))
            classifier.build((None, 3))
            ds = tf.data.Dataset.from_tensor_slices(tf.random.normal([8, 3])).batch(4)
            params = norm.trainable_variables + classifier.trainable_variables
            for xb in ds:
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.square(classifier(xb)))
                grads = tape.gradient(loss, params)  # expect: GT214
            """,
            truth=Truth(grads={"grads[0]": "none"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        for call, apply_node, var_expr in facts.misapplied.values():
            sources = call.node.args[1] if len(call.node.args) > 1 else None
            src = f"`{ast.unparse(sources)}`" if sources is not None else "these variables"
            dst = f"`{ast.unparse(var_expr)}`" if var_expr is not None else "other variables"
            yield ctx.report(
                call.node,
                f"This `{call.method}()` differentiates {src}, but line {apply_node.lineno} applies it to {dst}.",
                data={"lost": [ast.unparse(var_expr)] if var_expr is not None else []},
            )
        for call in facts.grad_calls.values():
            target = call.target
            if not target.srcs:
                continue
            cut_origins = set()
            for cut in target.cuts:
                cut_origins |= cut.lost
            pairs = call.source_pairs
            used = [any(covered(o, target.srcs) or o in cut_origins for o in val.srcs) for _, val in pairs]
            for (expr, val), reached in zip(pairs, used):
                if val.kind != "varlist" or not val.srcs or reached:
                    continue
                if expr is not None:
                    text = f"`{ast.unparse(expr)}`"
                else:  # one part of a list built before the call: name its variables
                    text = join_phrases([f"`{n}`" for n in facts.names(val.srcs)]) or "some of these variables"
                whose = "their gradients are" if any(used) else "every gradient is"
                yield ctx.report(
                    call.node,
                    f"The target of this `{call.method}()` uses none of {text}: {whose} None.",
                    data={"lost": [text.strip("`")]},
                )
