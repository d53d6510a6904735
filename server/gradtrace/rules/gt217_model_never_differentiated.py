"""GT217: a model the loss is computed with, whose variables no tape.gradient of the file asks for."""

from __future__ import annotations

import ast

from gradtrace.analysis.core.values import covered
from gradtrace.analysis.frameworks.common import FROZEN_NAME_HINTS
from gradtrace.rules._messages import join_phrases
from gradtrace.rules.base import Invalid, Rule, Truth


class ModelNeverDifferentiated(Rule):
    code = "GT217"
    name = "model-never-differentiated"
    summary = "The loss is computed with a model whose variables no tape.gradient asks for: that model never trains."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags a `tape.gradient(loss, variables)` whose gradients an optimizer applies, when `loss` is computed
    with a named model or layer (`decoder`, `self.decoder`) whose variables are in the `variables` of no
    `tape.gradient` anywhere in the file: an autoencoder step that differentiates only
    `self.encoder.trainable_variables`. A model that is meant to stay as it is stays quiet: one set to
    `trainable = False` (or built with `trainable=False`), a pretrained `keras.applications` network, one
    called with `training=False` or named for it (`teacher`, `target_net`, `ema_model`, `vgg`), or one another
    step of the file trains (the discriminator of a GAN, used in the generator's loss).

    ## Why is this bad?
    The gradients of the model's variables are never computed, so the optimizer never changes them: the
    model keeps its initial (random) weights while the loss still goes down through the other part,
    without any error.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(decoder(encoder(x)) - x))
    grads = tape.gradient(loss, encoder.trainable_variables)
    opt.apply_gradients(zip(grads, encoder.trainable_variables))
    ```

    ## Use instead
    ```python
    variables = encoder.trainable_variables + decoder.trainable_variables
    grads = tape.gradient(loss, variables)
    opt.apply_gradients(zip(grads, variables))
    ```

    ## Fix safety
    No automatic fix: which models should train is the author's call.
    """
    valid = (
        """
        import tensorflow as tf

        generator = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(2)])
        critic = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
        g_opt = tf.keras.optimizers.Adam(1e-3)
        c_opt = tf.keras.optimizers.Adam(1e-3)
        z = tf.random.normal([8, 2])
        real = tf.random.normal([8, 2])
        with tf.GradientTape() as tape:
            c_loss = tf.reduce_mean(critic(generator(z))) - tf.reduce_mean(critic(real))
        grads = tape.gradient(c_loss, critic.trainable_variables)
        c_opt.apply_gradients(zip(grads, critic.trainable_variables))
        with tf.GradientTape() as tape:
            g_loss = -tf.reduce_mean(critic(generator(z)))
        grads = tape.gradient(g_loss, generator.trainable_variables)
        g_opt.apply_gradients(zip(grads, generator.trainable_variables))
        """,
        """
        import tensorflow as tf

        features = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(8)])
        features.trainable = False
        head = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(1)])
        opt = tf.keras.optimizers.SGD(0.1)
        x = tf.random.normal([8, 4])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(head(features(x))))
        grads = tape.gradient(loss, head.trainable_variables)
        opt.apply_gradients(zip(grads, head.trainable_variables))
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf

            encoder = tf.keras.Sequential([tf.keras.Input((6,)), tf.keras.layers.Dense(3)])
            decoder = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(6)])
            opt = tf.keras.optimizers.Adam(1e-2)
            x = tf.random.normal([16, 6])
            before = tf.identity(decoder.trainable_variables[0])
            for step in range(3):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.square(decoder(encoder(x)) - x))
                grads = tape.gradient(loss, encoder.trainable_variables)  # expect: GT217
                opt.apply_gradients(zip(grads, encoder.trainable_variables))
            decoder_change = decoder.trainable_variables[0] - before
            """,
            truth=Truth(grads={"decoder_change": "zero"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf


            class DenoisingAE(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.encoder = tf.keras.Sequential([tf.keras.layers.Dense(3)])
                    self.decoder = tf.keras.Sequential([tf.keras.layers.Dense(6)])

                def call(self, x):
                    return self.decoder(self.encoder(x))

                def train_step(self, x):
                    with tf.GradientTape() as tape:
                        loss = tf.reduce_mean(tf.square(self(x, training=True) - x))
                    variables = self.encoder.trainable_variables
                    grads = tape.gradient(loss, variables)  # expect: GT217
                    self.optimizer.apply_gradients(zip(grads, variables))
                    return {"loss": loss}


            model = DenoisingAE()
            model(tf.zeros([1, 6]))
            model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
            before = tf.identity(model.decoder.trainable_variables[0])
            model.fit(tf.random.normal([32, 6]), epochs=2, batch_size=8, verbose=0)
            decoder_change = model.decoder.trainable_variables[0] - before
            """,
            truth=Truth(grads={"decoder_change": "zero"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        facts = ctx.tensorflow
        plugin = facts.plugin
        asked: set = set()  # every source any gradient of the file is taken with respect to
        for call in plugin.grad_calls.values():
            for _, value in call.source_pairs:
                asked |= value.srcs
        for call in facts.grad_calls.values():
            lists = [v for _, v in call.source_pairs if v.kind == "varlist" and v.srcs]
            if not call.applied or not lists or call.node in facts.misapplied:
                continue
            target = call.target
            if not any(covered(origin, target.srcs) for v in lists for origin in v.srcs):
                continue  # the loss uses none of what is differentiated: GT214 says so
            lost = set().union(*(c.lost for c in target.cuts)) if target.cuts else set()
            missing = sorted({
                plugin.origin_names[origin].split(".")[-1] for origin in target.srcs
                if origin in plugin.origin_names and origin.startswith("module@") and origin not in lost
                and origin not in plugin.frozen_models and origin not in plugin.pretrained
                and not covered(origin, frozenset(asked)) and own_model(plugin.origin_names[origin], call.node, ctx)
            })
            missing = [name for name in missing if not meant_fixed(name, ctx.source)]
            if not missing:
                continue
            names = [f"`{name}`" for name in missing]
            yield ctx.report(
                call.node,
                f"The loss is computed with {join_phrases(names)}, but no `tape.gradient` in this file asks for "
                f"{'its' if len(names) == 1 else 'their'} variables: {join_phrases(names)} never "
                f"{'trains' if len(names) == 1 else 'train'}.",
                data={"lost": [n.strip("`") for n in names]},
            )


def meant_fixed(name: str, source) -> bool:
    """A model used as it is on purpose: named so (`teacher`, `target_net`, `vgg`), or called in inference mode
    (`teacher(x, training=False)`) somewhere in the file."""
    if any(hint in name.lower() for hint in FROZEN_NAME_HINTS):
        return True
    for call in source.nodes(ast.Call):
        func = call.func
        called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if called == name and any(k.arg == "training" and isinstance(k.value, ast.Constant) and k.value.value is False
                                  for k in call.keywords):
            return True
    return False


def own_model(name: str, node: ast.AST, ctx) -> bool:
    """Is the model named `name` one the gradient's own code holds: a variable (`decoder`), or an attribute of the
    class whose method takes the gradient (`self.decoder` in `train_step`)? A layer made inside another layer
    (`CustomLayer.inner`, built when Keras first calls it) belongs to that layer, whose variables may be asked for
    as a whole."""
    owner, _, _ = name.rpartition(".")
    if not owner:
        return True
    info = ctx.tensorflow.plugin.interp.root.classes.get(owner)
    return info is not None and info.node.lineno <= node.lineno <= (info.node.end_lineno or info.node.lineno)
