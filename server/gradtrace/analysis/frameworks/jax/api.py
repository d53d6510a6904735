"""What JAX names mean for the gradient: tables the JAX plug-in reads (one place for each)."""

from __future__ import annotations

from gradtrace.analysis.source import IMPORTED_AS

ROOTS = frozenset(IMPORTED_AS["jax"])
# Transforms that differentiate a function: qualified name -> mode
GRAD_TRANSFORMS = {"jax.grad": "grad", "jax.value_and_grad": "value_and_grad", "jax.jacrev": "jacrev",
                   "jax.jacfwd": "jacfwd", "jax.hessian": "hessian", "equinox.filter_grad": "grad",
                   "equinox.filter_value_and_grad": "value_and_grad", "flax.nnx.grad": "grad",
                   "flax.nnx.value_and_grad": "value_and_grad"}
# Trace (differentiate) only the (floating-point) array leaves of their arguments: Python values stay static
FILTERED_TRANSFORMS = frozenset({"equinox.filter_grad", "equinox.filter_value_and_grad", "equinox.filter_jit"})
VJP = "jax.vjp"
# Modes that raise TypeError for an integer input (`jax.vjp` gives it a float0 cotangent instead)
INTEGER_REJECTING = frozenset({"grad", "value_and_grad", "jacrev", "jacfwd", "hessian"})
# Modes that differentiate in reverse (a dynamic loop inside them raises)
REVERSE_MODES = frozenset({"grad", "value_and_grad", "jacrev", "hessian", "vjp"})
# Transforms that trace a function abstractly (no concrete values inside): qualified name -> mode
TRACING_TRANSFORMS = {"jax.jit": "jit", "jax.vmap": "vmap", "jax.pmap": "pmap", "equinox.filter_jit": "jit",
                      "flax.nnx.jit": "jit", "flax.nnx.vmap": "vmap"}
# Decorators that give a function a derivative of its own: never a cut, whatever the body does
CUSTOM_DERIVATIVE = frozenset({"jax.custom_vjp", "jax.custom_jvp"})
# What a custom VJP rule returns for an input that gets no gradient (a zero cotangent)
ZERO_COTANGENTS = frozenset({"jax.numpy.zeros_like", "jax.numpy.zeros", "numpy.zeros_like", "numpy.zeros",
                             "jax.lax.zeros_like_array"})
PARTIAL = frozenset({"partial", "functools.partial"})
# Stops the gradient on purpose
STOP_GRADIENT = frozenset({"jax.lax.stop_gradient", "jax.numpy.stop_gradient"})
# Ops whose result has no derivative: an integer index ...
INDEX_OPS = frozenset({"argmax", "argmin", "argsort", "searchsorted", "digitize", "nonzero", "argwhere"})
# (values, indices) pairs: the values carry the gradient, the indices are integers without one
VALUES_AND_INDICES = frozenset({"jax.lax.top_k", "jax.lax.approx_max_k", "jax.lax.approx_min_k"})
# ... or a derivative that is zero almost everywhere
ZERO_GRAD_OPS = frozenset({"round", "floor", "ceil", "sign", "rint", "trunc", "fix", "heaviside"})
# Draw discrete samples: an integer or boolean result, no derivative with respect to the distribution
DISCRETE_SAMPLERS = {"jax.random.categorical": "int", "jax.random.bernoulli": "bool", "jax.random.poisson": "int",
                     "jax.random.binomial": "int", "jax.random.geometric": "int"}
# Return host (NumPy) values, outside any trace
HOST_RESULT = frozenset({"jax.device_get"})
# Run a host function inside a trace with no derivative: differentiating through them raises
HOST_CALLBACKS = frozenset({"jax.pure_callback"})
HOST_ROOTS = ("numpy.", "math.", "scipy.")
# NumPy functions that read only an array's metadata (no conversion of a tracer)
HOST_METADATA = frozenset({"numpy.shape", "numpy.ndim", "numpy.size", "numpy.result_type", "numpy.iscomplexobj",
                           "numpy.isrealobj", "numpy.isscalar"})
# Array constructors whose result is float unless told otherwise
FLOAT_FACTORIES = frozenset({"zeros", "ones", "empty", "full", "zeros_like", "ones_like", "eye", "linspace",
                             "identity"})
# Where a constructor takes its dtype when not by keyword
DTYPE_POSITION = {"array": 1, "asarray": 1, "zeros": 1, "ones": 1, "empty": 1, "identity": 1, "zeros_like": 1,
                  "ones_like": 1, "empty_like": 1, "full": 2, "full_like": 2, "eye": 3, "arange": 3}
# Return a list of arrays (a Python list: its items may be reassigned)
SEQUENCE_RESULTS = frozenset({"split", "array_split", "hsplit", "vsplit", "dsplit", "meshgrid", "unstack",
                              "broadcast_arrays"})
KEY_FACTORIES = frozenset({"jax.random.split", "jax.random.PRNGKey", "jax.random.key"})
ARRAY_MODULES = ("jax.numpy.", "jax.nn.", "jax.random.", "jax.lax.", "jax.scipy.")
# Functions with an infinite derivative at 0 (a `where` that masks them still differentiates them)
SINGULAR_AT_ZERO = frozenset({"jax.numpy.log", "jax.numpy.sqrt", "jax.numpy.arcsin", "jax.numpy.arccos",
                              "jax.numpy.log2", "jax.numpy.log10", "jax.numpy.reciprocal", "jax.numpy.arctanh"})
POWER = frozenset({"jax.numpy.power", "jax.lax.pow"})
# Results that are safe to differentiate whatever their input (they guard a singular argument)
GUARDS = frozenset({"maximum", "clip", "abs"})
# Dynamic loops: reverse mode cannot differentiate through them
DYNAMIC_LOOPS = frozenset({"jax.lax.while_loop", "jax.lax.fori_loop"})
TREE_MAP = frozenset({"jax.tree_util.tree_map", "jax.tree_map", "jax.tree.map"})
# Optimizer steps: the parameters they take are the ones the gradients update
APPLY_UPDATES = frozenset({"optax.apply_updates"})
UPDATE_OPS = frozenset({"operator.sub", "operator.add", "jax.numpy.subtract", "jax.numpy.add", "numpy.subtract",
                        "numpy.add"})
# lax operations that take and return whole pytrees (collectives keep their input's structure)
COLLECTIVES = frozenset({"psum", "pmean", "pmax", "pmin", "all_gather", "ppermute", "psum_scatter", "all_to_all",
                         "pshuffle"})
PYTREE_LAX = frozenset({"cond", "switch", "scan", "map", "associative_scan", "custom_root", "custom_linear_solve"})
# Array methods that keep a traced argument an array
ARRAY_METHODS = frozenset({"sum", "mean", "max", "min", "any", "all", "prod", "std", "var", "reshape", "squeeze",
                           "ravel", "flatten", "transpose", "dot", "cumsum", "clip", "conj"})
# Methods that turn an array into Python values
HOST_METHODS = frozenset({"item", "tolist"})
# Attributes that are static under a trace (shapes, dtypes)
STATIC_ATTRS = frozenset({"shape", "ndim", "dtype", "size", "name", "device", "rank"})
ARRAY_VIEWS = frozenset({"T", "mT", "real"})
