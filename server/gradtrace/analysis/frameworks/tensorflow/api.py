"""What TensorFlow and Keras names mean for the gradient: tables the TensorFlow plug-in reads (one place each)."""

from __future__ import annotations

from gradtrace.analysis.source import IMPORTED_AS

ROOTS = frozenset(IMPORTED_AS["tensorflow"])
# Base classes of layers and models: their `call`/`__call__` output is a sink of its own
MODULE_BASES = frozenset({"tensorflow.Module", "keras.layers.Layer", "keras.Model", "keras.models.Model", "keras.Layer",
                          "keras.layers.base.Layer"})
MODULE_BASE_SUFFIXES = (".Layer", ".Model", ".Module")
# ... of which these are not Keras's: a `tf.Module` tracks the `tf.Variable`s set on it, a Keras 3 layer does not
PLAIN_MODULE_BASES = frozenset({"tensorflow.Module"})
CALL_METHODS = ("call", "__call__")
# Create trainable variables
VARIABLE_FACTORIES = frozenset({"tensorflow.Variable", "tensorflow.compat.v1.Variable"})
WEIGHT_METHODS = frozenset({"add_weight", "add_variable"})
# Apply a function to every leaf of a structure (with `tf.Variable`: a structure of new variables)
STRUCTURE_MAPS = frozenset({"tensorflow.nest.map_structure"})
# `tf.data`: a dataset runs the functions given to these methods in a graph of its own, outside every tape
DATASETS = "tensorflow.data."
DATASET_FUNCTION_METHODS = frozenset({"map", "reduce", "filter", "flat_map", "scan", "interleave"})
TAPE = "tensorflow.GradientTape"
# Tape methods that differentiate (sinks)
GRADIENT_METHODS = frozenset({"gradient", "jacobian", "batch_jacobian"})
# Optimizer steps: what they are given is what trains
APPLY_METHODS = frozenset({"apply_gradients", "apply"})
# Run a loss function under a tape of their own and step on its gradients
MINIMIZE_METHODS = frozenset({"minimize"})
# Train a Keras model on its own output: a sink at the model's output
FIT_METHODS = frozenset({"fit", "train_on_batch"})
# Run a model outside any tape and return NumPy arrays
PREDICT_METHODS = frozenset({"predict", "predict_on_batch"})
# In-place updates of a variable, invisible to the tape
ASSIGN_METHODS = frozenset({"assign", "assign_add", "assign_sub"})
# ... and of a model's variables, from values (NumPy or tensors) the tape does not see
WEIGHT_SETTERS = frozenset({"set_weights"})
# Stop the gradient on purpose
STOP_GRADIENT = frozenset({"tensorflow.stop_gradient", "keras.backend.stop_gradient", "keras.ops.stop_gradient"})
# Run Python/NumPy code outside the graph: what they return has no gradient
HOST_FUNCTIONS = frozenset({"tensorflow.numpy_function", "tensorflow.py_func", "tensorflow.compat.v1.py_func",
                            "keras.backend.eval", "keras.backend.get_value", "keras.ops.convert_to_numpy"})
HOST_ROOTS = ("numpy.", "scipy.", "math.")
# Records the TensorFlow ops its function runs: differentiable through its inputs
PY_FUNCTION = "tensorflow.py_function"
# Integer results (no gradient) ...
INDEX_OPS = frozenset({"argmax", "argmin", "argsort", "searchsorted", "histogram_fixed_width", "bucketize"})
# ... and ops with no registered or an almost-everywhere zero gradient (float `//` is FloorDiv)
ZERO_GRAD_OPS = frozenset({"round", "floor", "ceil", "sign", "rint", "floordiv", "floor_div", "truncatediv"})
# Methods that take a tensor out of TensorFlow: (cut kind, result kind)
HOST_METHODS = {"numpy": "numpy", "item": "python", "tolist": "python"}
# Attributes and factories of Keras models
VARIABLE_LISTS = frozenset({"trainable_variables", "trainable_weights", "variables", "weights"})
# What reading or setting on a model does not build it (Keras makes a layer's weights on its first call, `build`
# or `fit`): `model.compile(...)`, `model.trainable = False`, `model.trainable_variables`, ...
UNBUILDING_ATTRS = VARIABLE_LISTS | frozenset({"compile", "trainable", "name", "non_trainable_variables",
                                               "non_trainable_weights", "optimizer", "layers"})
SEQUENTIAL = frozenset({"keras.Sequential", "keras.models.Sequential"})
# Keyword arguments of a first layer that make a `Sequential` built on construction
INPUT_SHAPE_ARGS = frozenset({"input_shape", "input_dim", "batch_input_shape", "batch_shape"})
# A model's symbolic graph tensors (KerasTensors), not the data it is called on
SYMBOLIC_ATTRS = frozenset({"inputs", "outputs", "input", "output"})
FUNCTIONAL_MODELS = frozenset({"keras.Model", "keras.models.Model"})
MODEL_FACTORIES = frozenset({"keras.Sequential", "keras.models.Sequential", "keras.Model", "keras.models.Model"})
INPUTS = frozenset({"keras.Input", "keras.layers.Input", "keras.layers.InputLayer"})
LAMBDA_LAYER = "keras.layers.Lambda"
LAYER_PREFIXES = ("keras.layers.", "keras.applications.")
# Names under `keras.layers` that are not layers (no variables, never called on tensors)
NOT_LAYERS = frozenset({"InputSpec"})
# A new model with variables of its own
MODEL_COPIES = frozenset({"keras.models.clone_model", "keras.models.load_model", "keras.saving.load_model"})
CALLABLE_PREFIXES = ("keras.optimizers.", "keras.losses.", "keras.metrics.", "keras.initializers.")
METRIC_PREFIX = "keras.metrics."
CAST = "cast"
# Where a constructor takes its dtype when not by keyword (None: keyword only)
DTYPE_POSITION = {"zeros": 1, "ones": 1, "constant": 1, "fill": None, "convert_to_tensor": 1, "eye": None}
# Layers without weights (nothing to train, nothing to lose)
WEIGHTLESS_LAYERS = frozenset({
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
    "AveragePooling2D", "AveragePooling3D", "Flatten", "Reshape", "Permute", "RepeatVector", "Dropout",
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout", "GaussianNoise", "GaussianDropout",
    "Activation", "ReLU", "Softmax", "LeakyReLU", "ELU", "ThresholdedReLU", "Concatenate", "Add", "Subtract",
    "Multiply", "Average", "Maximum", "Minimum", "Dot", "Lambda", "Cropping1D", "Cropping2D", "ZeroPadding1D",
    "ZeroPadding2D", "UpSampling1D", "UpSampling2D", "Identity", "Masking", "Rescaling", "Resizing", "CenterCrop",
    "Input", "InputLayer", "ActivityRegularization", "Normalization", "Hashing", "StringLookup", "IntegerLookup",
    "TextVectorization", "CategoryEncoding", "Discretization", "UnitNormalization"})
WEIGHTLESS_PREFIXES = ("MaxPool", "AveragePool", "AvgPool", "GlobalMaxPool", "GlobalAveragePool", "GlobalAvgPool",
                       "ZeroPadding", "Cropping", "UpSampling", "Random")
# Methods of a layer that keep their argument beyond the call (a loss term, a cache for the training step)
ESCAPING = frozenset({"add_loss", "add_update", "append", "extend", "insert", "update", "setdefault", "put"})
# Updates once per call: a variable created in a function that runs them is created once per step
STEP_UPDATES = frozenset({"apply_gradients", "minimize", "assign_sub", "assign_add", "apply"})
STATIC_ATTRS = frozenset({"shape", "ndim", "dtype", "size", "name", "device", "rank"})


def layer_base(base: str) -> bool:
    """A base class (qualified name) that makes a class a layer, a model or a `tf.Module`."""
    return base in MODULE_BASES or base.endswith(MODULE_BASE_SUFFIXES)


def weightless(layer: str) -> bool:
    """A Keras layer class (short name) that has no weights."""
    return layer in WEIGHTLESS_LAYERS or layer.startswith(WEIGHTLESS_PREFIXES)
TF_FUNCTION = "tensorflow.function"  # traces a Python function into a graph: variables only on its first trace
