"""GT216: a layer weight created with trainable=False, used like a learned parameter, never updated."""

from __future__ import annotations

import ast
import re

from gradtrace.rules.base import Invalid, Rule, Truth

STATISTIC = re.compile(
    r"moving|running|count|step|mean|var|stat|ema|avg|average|buffer|mask|num|total|iter|seed|global|sum|min|max|"
    r"hist|cache|pos|sin|cos|freq|table|const|fixed|frozen|pretrain|anchor|prior|kernel_init", re.IGNORECASE)
LEARNED_INIT = {"zeros", "ones", "glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "lecun_normal",
                "lecun_uniform", "random_normal", "random_uniform", "truncated_normal", "orthogonal", "Zeros", "Ones",
                "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal", "LecunUniform",
                "RandomNormal", "RandomUniform", "TruncatedNormal", "Orthogonal"}
RANDOM_VALUES = {"zeros", "ones", "normal", "uniform", "truncated_normal", "glorot_uniform"}
UPDATES = ("assign", "assign_add", "assign_sub", "scatter_update", "scatter_add", "scatter_sub", "scatter_nd_update",
           "scatter_nd_add", "batch_scatter_update", "load")
TRAINS = ("fit", "train_on_batch", "apply_gradients", "minimize")


# methods of a layer that build or describe it, never compute with its weights
NOT_COMPUTING = frozenset({"__init__", "build", "get_config", "from_config", "compute_output_shape",
                           "get_build_config", "build_from_config", "reset_state", "reset_states"})


class FrozenWeightUsedAsParameter(Rule):
    code = "GT216"
    name = "frozen-weight-used-as-parameter"
    summary = "A layer weight made with trainable=False is used like a learned parameter and never updated."
    severity = "warning"
    framework = "tensorflow"
    docs = """
    ## What it does
    Flags `self.w = self.add_weight(..., trainable=False)` (or `tf.Variable(..., trainable=False)`) in a
    Keras layer or `tf.Module` when all of these hold: the file trains (`fit`, `apply_gradients`,
    `minimize`), `call` (or another method that computes with the layer, a loss method) uses the weight
    in arithmetic, nothing ever updates it (no `.assign*`,
    `set_weights`, `load_weights`, rebinding), it starts from a plain initialiser (zeros, ones, a
    random one) and its name does not look like a statistic or a constant (`moving_*`, `running_*`,
    `count`, `step`, `mean`, `var`, `mask`, `fixed_*`...).

    ## Why is this bad?
    A non-trainable weight is left out of `trainable_variables`: `fit` and the optimizer never update
    it, so it stays at its initial value (a "learned" scale of zeros stays zero) while the rest of the
    model trains around it. Running statistics and counters are legitimately non-trainable, but they
    are updated with `assign`, which this rule looks for.

    ## Example
    ```python
    def build(self, input_shape):
        self.log_scale = self.add_weight(shape=(input_shape[-1],), initializer="zeros", trainable=False)
    ```

    ## Use instead
    ```python
    def build(self, input_shape):
        self.log_scale = self.add_weight(shape=(input_shape[-1],), initializer="zeros")
    ```

    ## Fix safety
    No automatic fix: the weight might be a constant on purpose.
    """
    valid = (
        """
        import tensorflow as tf

        class Standardize(tf.keras.layers.Layer):
            def build(self, input_shape):
                self.moving_mean = self.add_weight(shape=(input_shape[-1],), initializer="zeros", trainable=False)
                self.shift = self.add_weight(shape=(input_shape[-1],), initializer="zeros", trainable=False)

            def call(self, x, training=False):
                if training:
                    self.moving_mean.assign(0.9 * self.moving_mean + 0.1 * tf.reduce_mean(x, axis=0))
                    self.shift.assign_add(tf.reduce_mean(x, axis=0))
                return x - self.moving_mean - self.shift

        model = tf.keras.Sequential([tf.keras.Input((3,)), Standardize(), tf.keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        model.fit(tf.ones([4, 3]), tf.zeros([4, 1]), verbose=0)
        """,
        """
        import tensorflow as tf

        class Smooth(tf.keras.layers.Layer):
            def build(self, input_shape):
                kernel = tf.constant_initializer([0.25, 0.5, 0.25])
                self.taps = self.add_weight(shape=(3,), initializer=kernel, trainable=False)

            def call(self, x):
                return x * tf.reduce_sum(self.taps)

        model = tf.keras.Sequential([tf.keras.Input((3,)), Smooth(), tf.keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        model.fit(tf.ones([4, 3]), tf.zeros([4, 1]), verbose=0)
        """,
    )
    invalid = (
        Invalid(
            """
            import tensorflow as tf

            class FeatureScale(tf.keras.layers.Layer):
                def build(self, input_shape):
                    self.log_scale = self.add_weight(shape=(input_shape[-1],), initializer="zeros",  # expect: GT216
                                                     trainable=False)
                    self.offset = self.add_weight(shape=(input_shape[-1],), initializer="zeros")

                def call(self, x):
                    return x * tf.exp(self.log_scale) + self.offset

            scaler = FeatureScale()
            model = tf.keras.Sequential([tf.keras.Input((3,)), scaler, tf.keras.layers.Dense(1)])
            model.compile(optimizer="adam", loss="mse")
            model.fit(tf.random.normal([16, 3]), tf.ones([16, 1]), epochs=2, verbose=0)
            """,
            truth=Truth(grads={"scaler.log_scale": "zero"}, framework="tensorflow"),
        ),
        Invalid(
            """
            import tensorflow as tf


            class HeteroRegressor(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.mean = tf.keras.layers.Dense(1)
                    self.log_sigma = self.add_weight(shape=(), initializer="zeros", trainable=False)  # expect: GT216

                def call(self, x):
                    return tf.squeeze(self.mean(x), axis=-1)

                def nll(self, y, mu):
                    return tf.reduce_mean(tf.exp(-2.0 * self.log_sigma) * tf.square(y - mu) + self.log_sigma)


            model = HeteroRegressor()
            opt = tf.keras.optimizers.Adam(0.05)
            x, y = tf.random.normal([32, 3]), tf.random.normal([32])
            for step in range(5):
                with tf.GradientTape() as tape:
                    loss = model.nll(y, model(x))
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
            """,
            truth=Truth(grads={"model.log_sigma": "zero"}, framework="tensorflow"),
        ),
    )

    def check(self, ctx):
        calls = [n for n in ctx.source.nodes(ast.Call) if isinstance(n.func, ast.Attribute)]
        if not any(c.func.attr in TRAINS for c in calls):
            return
        if any(c.func.attr in ("set_weights", "load_weights") for c in calls):
            return
        facts = ctx.tensorflow
        updated = {c.func.value.attr for c in calls if c.func.attr in UPDATES and isinstance(c.func.value, ast.Attribute)}
        stores: dict = {}
        for n in ctx.source.nodes(ast.Attribute):
            if isinstance(n.ctx, ast.Store):
                stores[n.attr] = stores.get(n.attr, 0) + 1
        for info in facts.variables.values():
            if info.trainable or info.dtype == "int" or not info.cls or not info.attr or info.attr in updated:
                continue
            if stores.get(info.attr, 0) != 1 or not self.plain_init(ctx, info):
                continue
            label = info.node.keywords and next((k.value.value for k in info.node.keywords if k.arg == "name" and
                                                 isinstance(k.value, ast.Constant)), None)
            if STATISTIC.search(info.attr) or (isinstance(label, str) and STATISTIC.search(label)):
                continue
            cls = facts.classes.get(info.cls)
            if cls is None or not self.used_in_call(ctx, cls, info.attr):
                continue
            yield ctx.report(
                info.node,
                f"`self.{info.attr}` has `trainable=False`, yet it is used like a learned parameter: it never changes.",
                data={"lost": [f"{info.cls}.{info.attr}"]},
            )

    @staticmethod
    def plain_init(ctx, info) -> bool:
        node = info.node
        if isinstance(node.func, ast.Attribute) and node.func.attr in ("add_weight", "add_variable"):
            init = next((k.value for k in node.keywords if k.arg == "initializer"), None)
            if init is None:
                return True
            if isinstance(init, ast.Constant):
                return init.value in LEARNED_INIT
            if isinstance(init, ast.Call):
                init = init.func
            text = ast.unparse(init).rsplit(".", 1)[-1]
            return text in LEARNED_INIT
        value = next((k.value for k in node.keywords if k.arg == "initial_value"), node.args[0] if node.args else None)
        if isinstance(value, ast.Call):
            return ast.unparse(value.func).rsplit(".", 1)[-1] in RANDOM_VALUES
        return False

    @staticmethod
    def used_in_call(ctx, cls, attr: str) -> bool:
        """Does a method that computes with the layer (`call`, or a loss method such as `nll`) use the weight in
        arithmetic? Its construction and configuration methods do not count."""
        parents = ctx.source.parents
        for name, fn in cls.methods.items():
            if name in NOT_COMPUTING:
                continue
            for n in ast.walk(fn):
                if isinstance(n, ast.Attribute) and n.attr == attr and isinstance(n.value, ast.Name) and \
                        n.value.id == "self" and isinstance(n.ctx, ast.Load):
                    parent = parents.get(id(n))
                    if isinstance(parent, ast.BinOp) or (isinstance(parent, ast.Call) and n in parent.args):
                        return True
        return False
