"""What PyTorch names mean for the gradient: tables the value flow reads (one place for them)."""

from __future__ import annotations

# Tensor methods that leave autograd: (cut kind, shown op, result kind)
CUT_METHODS = {
    "detach": ("detach", ".detach()", "tensor"),
    "detach_": ("detach", ".detach_()", "tensor"),
    "item": ("item", ".item()", "number"),
    "tolist": ("item", ".tolist()", "container"),
    "numpy": ("numpy", ".numpy()", "array"),
    "__array__": ("numpy", ".__array__()", "array"),
}
# Integer/bool conversions: the result cannot require grad.
INT_CAST_METHODS = {"long", "int", "short", "byte", "char", "bool"}
INT_DTYPES = {
    "torch.int", "torch.int8", "torch.int16", "torch.int32", "torch.int64", "torch.long", "torch.short",
    "torch.uint8", "torch.bool", "torch.uint16", "torch.uint32", "torch.uint64",
}
FLOAT_DTYPES = {"torch.float", "torch.float32", "torch.float64", "torch.double", "torch.float16", "torch.half",
                "torch.bfloat16", "torch.complex64", "torch.complex128", "torch.cfloat", "torch.cdouble"}
# Ops whose result carries no gradient at all (None): indices and booleans.
INDEX_OPS = {"argmax", "argmin", "argsort", "argwhere", "nonzero", "searchsorted", "bucketize", "bincount",
             "unique", "unique_consecutive", "multinomial", "randint_like", "histc"}
# Ops with a gradient that is zero almost everywhere.
ZERO_GRAD_OPS = {"round", "floor", "ceil", "sign", "trunc", "fix", "heaviside", "signbit"}
# Draws whose backward gives every tensor argument a zero gradient (`torch.normal(mu, std)`: use `mu + std * eps`)
SAMPLING_OPS = {"normal", "bernoulli", "poisson"}
# Location-scale distributions: `log_prob` of their own `rsample()` (loc + scale * eps) does not depend on the loc
LOCATION_SCALE_DISTRIBUTIONS = frozenset(
    f"torch.distributions.{path}" for path in (
        "Normal", "normal.Normal", "Laplace", "laplace.Laplace", "Cauchy", "cauchy.Cauchy", "MultivariateNormal",
        "multivariate_normal.MultivariateNormal", "LowRankMultivariateNormal",
        "lowrank_multivariate_normal.LowRankMultivariateNormal"))
# A `torch.distributions` draw made under no_grad: no graph (`rsample()` is the differentiable one)
UNGRADED_DRAWS = {"sample", "sample_n"}
COMPARE_METHODS = {"eq", "ne", "lt", "le", "gt", "ge", "greater", "less", "greater_equal", "less_equal",
                   "not_equal", "equal", "isclose", "isnan", "isinf", "isfinite", "logical_and", "logical_or",
                   "logical_not", "logical_xor", "allclose", "isneginf", "isposinf"}
# (values, indices) pairs: values keep the gradient, indices do not.
VALUES_INDICES_OPS = {"max", "min", "topk", "sort", "kthvalue", "mode", "median", "nanmedian", "cummax", "cummin",
                      "aminmax"}
# Tensor-producing ops that save their OUTPUT for backward: modifying it in place breaks backward.
SAVES_OUTPUT = {"sigmoid", "tanh", "exp", "softmax", "log_softmax", "sqrt", "rsqrt", "relu", "exp2", "expm1",
                "reciprocal", "silu_not"}
# Run a module with the parameters (and buffers) of a dict in place of its own
FUNCTIONAL_CALLS = frozenset({"torch.func.functional_call", "torch.nn.utils.stateless.functional_call"})
# Layers that save their input for backward (their weight's gradient needs it): changing that input in place
# before backward raises
SAVES_INPUT_LAYERS = frozenset({"Linear", "Bilinear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
                                "ConvTranspose3d", "LazyLinear", "LazyConv1d", "LazyConv2d", "LazyConv3d", "LayerNorm",
                                "GroupNorm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d",
                                "InstanceNorm2d", "InstanceNorm3d", "RMSNorm"})
SAVES_OUTPUT_MODULES = {"torch.nn.Sigmoid", "torch.nn.Tanh", "torch.nn.Softmax", "torch.nn.LogSoftmax",
                        "torch.nn.ReLU"}
# In-place tensor methods that do not modify data as far as autograd is concerned.
NOT_REALLY_INPLACE = {"requires_grad_", "detach_", "retain_grad", "share_memory_", "pin_memory", "record_stream",
                      "register_hook", "zero_grad", "set_", "resize_", "untyped_storage", "backward"}
# Factories: create fresh tensors (leaves); `requires_grad=True` makes them trainable leaves.
FACTORIES = {
    "tensor", "as_tensor", "asarray", "from_numpy", "zeros", "ones", "empty", "full", "rand", "randn", "randint",
    "randperm", "arange", "linspace", "logspace", "eye", "zeros_like", "ones_like", "empty_like", "full_like",
    "rand_like", "randn_like", "randint_like", "normal", "bernoulli", "poisson", "Tensor", "FloatTensor",
    "DoubleTensor", "LongTensor", "IntTensor", "BoolTensor", "HalfTensor", "ByteTensor", "tril_indices",
    "triu_indices", "frombuffer", "from_file", "empty_strided", "scalar_tensor", "complex", "polar",
    "Variable",
}
# Tensor methods that make a new tensor of the receiver's dtype and device, with no history of their own.
FRESH_TENSOR_METHODS = {"new_zeros", "new_ones", "new_empty", "new_full"}
# Calls that hand back the module they wrap (or compile), with its parameters and its forward.
MODULE_WRAPPERS = {"torch.compile", "torch.jit.script", "torch.jit.trace", "torch.nn.DataParallel",
                   "torch.nn.parallel.DataParallel", "torch.nn.parallel.DistributedDataParallel",
                   "torch.nn.utils.spectral_norm", "torch.nn.utils.weight_norm",
                   "torch.nn.utils.parametrizations.weight_norm", "torch.nn.utils.parametrizations.spectral_norm",
                   "torch.nn.utils.parametrizations.orthogonal", "torch.compiler.compile"}
# Namespaces whose functions are tensor operations (besides `torch.<op>` itself).
TENSOR_NAMESPACES = ("torch.nn.functional.", "torch.linalg.", "torch.fft.", "torch.special.", "torch.nn.init.",
                     "torch.cuda.", "torch.autograd.functional.", "torch.func.", "torch.sparse.", "torch.masked.",
                     "torch.nested.", "torch.Tensor.")
# Legacy `torch.autograd.Variable(t)`: a new leaf with t's data (t's history is dropped, like torch.tensor(t)).
VARIABLE = {"torch.autograd.Variable", "torch.autograd.variable.Variable"}
INT_FACTORIES = {"randint", "randperm", "LongTensor", "IntTensor", "BoolTensor", "ByteTensor", "tril_indices",
                 "triu_indices", "randint_like"}
# Constructors that COPY their data out of the graph when given a tensor.
REWRAP_FACTORIES = {"tensor", "Tensor", "Variable", "FloatTensor", "DoubleTensor", "HalfTensor", "LongTensor", "IntTensor",
                    "BoolTensor", "ByteTensor", "cuda.FloatTensor", "cuda.LongTensor", "cuda.DoubleTensor"}
# Conversions that make a tensor non-leaf (when applied after requires_grad=True).
NONLEAF_METHODS = {"to", "cuda", "cpu", "double", "float", "half", "bfloat16", "type", "view", "reshape",
                   "t", "transpose", "permute", "unsqueeze", "squeeze", "expand", "contiguous", "flatten",
                   "clone", "mul", "div", "add", "sub", "pow", "abs", "exp", "log", "sqrt", "__mul__", "T",
                   "view_as", "reshape_as", "normal_", "uniform_", "clamp", "clamp_min", "clamp_max", "clip",
                   "tanh", "sigmoid", "relu", "softplus", "neg", "exp2", "log1p", "sin", "cos", "square", "rsqrt",
                   "reciprocal", "repeat", "tile", "narrow", "chunk", "split", "expand_as", "triu", "tril", "diag"}
PARAM_CONTAINERS = {"torch.nn.ModuleList", "torch.nn.ModuleDict", "torch.nn.ParameterList", "torch.nn.ParameterDict",
                    "torch.nn.Sequential"}
GRAD_OFF_CONTEXTS = {"torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad", "torch.autograd.grad_mode.no_grad",
                     "torch.autograd.inference_mode", "torch.autograd.grad_mode.inference_mode"}
GRAD_ON_CONTEXTS = {"torch.enable_grad", "torch.autograd.enable_grad", "torch.autograd.grad_mode.enable_grad"}
SET_GRAD_ENABLED = {"torch.set_grad_enabled", "torch.autograd.set_grad_enabled", "torch.autograd.grad_mode.set_grad_enabled"}
AUTOGRAD_GRAD = {"torch.autograd.grad"}
OPTIMIZER_PREFIXES = ("torch.optim.",)
# Functions from torch.nn.init and friends modify parameters in place under no_grad: fine.
SAFE_INPLACE_FUNCS_PREFIX = ("torch.nn.init.",)
# Parameters of built-in layers (for named_parameters() of statically known models).
BUILTIN_PARAMS = {
    "Linear": ("weight", "bias"), "Bilinear": ("weight", "bias"), "LazyLinear": ("weight", "bias"),
    "Conv1d": ("weight", "bias"), "Conv2d": ("weight", "bias"), "Conv3d": ("weight", "bias"),
    "ConvTranspose1d": ("weight", "bias"), "ConvTranspose2d": ("weight", "bias"),
    "ConvTranspose3d": ("weight", "bias"), "BatchNorm1d": ("weight", "bias"), "BatchNorm2d": ("weight", "bias"),
    "BatchNorm3d": ("weight", "bias"), "LayerNorm": ("weight", "bias"), "GroupNorm": ("weight", "bias"),
    "InstanceNorm1d": (), "InstanceNorm2d": (), "Embedding": ("weight",), "EmbeddingBag": ("weight",),
    "PReLU": ("weight",), "RMSNorm": ("weight",),
}
# What PyTorch's own layers keep as configuration: plain numbers, tuples, strings and flags, never a parameter or a
# layer (`self.conv.kernel_size[0]` carries no gradient of the convolution).
LAYER_CONFIG_ATTRIBUTES = frozenset({
    "kernel_size", "stride", "padding", "dilation", "groups", "output_padding", "padding_mode", "transposed",
    "in_channels", "out_channels", "in_features", "out_features", "num_features", "eps", "momentum", "affine",
    "track_running_stats", "normalized_shape", "elementwise_affine", "num_embeddings", "embedding_dim",
    "padding_idx", "max_norm", "norm_type", "scale_grad_by_freq", "sparse", "num_groups", "num_channels",
    "input_size", "hidden_size", "num_layers", "batch_first", "bidirectional", "proj_size", "nonlinearity",
    "dropout", "p", "inplace", "negative_slope", "scale_factor", "mode", "align_corners", "dim",
    "embed_dim", "num_heads", "head_dim", "kdim", "vdim", "training",
})
PARAMETERLESS_LAYERS = {
    "ReLU", "GELU", "SiLU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax", "Dropout", "Dropout1d", "Dropout2d",
    "Dropout3d", "Identity", "Flatten", "Unflatten", "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d",
    "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d", "LeakyReLU", "ELU", "SELU", "Softplus", "Hardtanh", "Mish", "Hardswish", "Upsample",
    "MSELoss", "CrossEntropyLoss", "L1Loss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "SmoothL1Loss",
    "HuberLoss", "KLDivLoss", "CosineSimilarity", "PairwiseDistance", "PixelShuffle", "ZeroPad2d",
    "ConstantPad1d", "ConstantPad2d", "ReflectionPad2d", "ReplicationPad2d", "Softsign", "Tanhshrink",
    "Threshold", "GLU", "LogSigmoid", "Softmin", "Hardsigmoid", "ReLU6", "CELU", "AlphaDropout",
    "TripletMarginLoss", "MarginRankingLoss", "CosineEmbeddingLoss", "HingeEmbeddingLoss", "CTCLoss",
    "PoissonNLLLoss", "GaussianNLLLoss", "MultiLabelSoftMarginLoss", "SoftMarginLoss", "MultiMarginLoss",
}
# Names that say "this part is deliberately not trained through this path".
# Classes under `torch.nn` that are not layers. Tensors: `self.b = nn.Buffer(t)` registers a buffer (a detached
# tensor that never gets a gradient), `nn.Parameter(t)` a parameter. Helpers: options, mixins, packed sequences,
# and every class of the namespaces below (pruning methods, attention masks and backends, weight-norm hooks...).
NN_TENSOR_CLASSES = {"Parameter": "param", "UninitializedParameter": "param", "Buffer": "buffer",
                     "UninitializedBuffer": "buffer"}
NN_NON_LAYER_CLASSES = frozenset(NN_TENSOR_CLASSES) | {
    "UninitializedTensorMixin", "LazyModuleMixin", "LinearCrossEntropyOptions", "PackedSequence", "PackedSequence_",
    "OrderedDictWrapper", "Gather", "Scatter"}
NN_NON_LAYER_NAMESPACES = ("torch.nn.functional.", "torch.nn.init.", "torch.nn.attention.", "torch.nn.parameter.",
                           "torch.nn.utils.prune.", "torch.nn.utils.rnn.", "torch.nn.utils.spectral_norm.",
                           "torch.nn.utils.weight_norm.", "torch.nn.utils.stateless.")


def is_layer_class(qualname: str) -> bool:
    """Whether a `torch.nn` class is a layer (an `nn.Module`): `torch.nn.Linear`, `torch.nn.modules.conv.Conv2d`,
    `torch.nn.Module` itself; not `torch.nn.Buffer`, `torch.nn.Parameter` or `torch.nn.attention.SDPBackend`."""
    if not qualname.startswith("torch.nn."):
        return False
    short = qualname.rpartition(".")[2]
    # the private bases of `torch.nn.modules` (`_Loss`, `_WeightedLoss`, `_ConvNd`, `_BatchNorm`) are modules too
    return short.lstrip("_")[:1].isupper() and short not in NN_NON_LAYER_CLASSES and not qualname.startswith(
        NN_NON_LAYER_NAMESPACES)


def nn_tensor_class(qualname: str) -> str | None:
    """"param" for `torch.nn.Parameter` (and the lazy one), "buffer" for `torch.nn.Buffer`, else None."""
    if not qualname.startswith("torch.nn."):
        return None
    namespace, _, short = qualname.rpartition(".")
    if namespace not in ("torch.nn", "torch.nn.parameter") and not namespace.startswith("torch.nn.modules"):
        return None
    return NN_TENSOR_CLASSES.get(short)
# Class attributes through which a library declares parameters that several attributes share (transformers'
# `_tied_weights_keys = {"lm_head.decoder.bias": "lm_head.bias"}`: after `post_init()` both names hold one tensor,
# so an attribute named there gets the gradient of the other's use).
TIED_PARAMETER_DECLARATIONS = ("_tied_weights_keys",)
