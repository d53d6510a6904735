"""TensorFlow value flow: what carries gradient into a `GradientTape`, what cuts it, what reaches a sink.

Origins are trainable floating `tf.Variable`s (module globals, locals, `self.x = tf.Variable(...)`,
`self.add_weight(...)`), Keras models/layers built in the file, and tensors a tape watches. Cuts are
`tf.stop_gradient`, NumPy and Python conversions, `tf.numpy_function`, integer casts, argmax-like ops,
rounding and floor division (`tf.py_function` is differentiable: its inputs flow through).
Sinks are `tape.gradient`/`jacobian` targets and the outputs of Keras `call`/`tf.Module.__call__`.

`analyze_tf(ctx)` returns a `TFFacts` shared by the GT2xx rules (`ctx.memo("tensorflow", analyze_tf)`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, replace

from gradtrace.analysis.flow_core import (
    EMPTY,
    MAX_DEPTH,
    ClassInfo,
    Cut,
    FuncRef,
    Interp,
    Val,
    covered,
    flat,
    join,
    kwarg,
)
from gradtrace.analysis.frameworks.common import dtype_of, literal_dtype

MODULE_BASES = ("tensorflow.Module", "keras.layers.Layer", "keras.Model", "keras.models.Model", "keras.layers.Layer",
                "keras.Layer", "tensorflow.keras.Model", "keras.layers.base.Layer")
STOP_GRADIENT = {"tensorflow.stop_gradient", "keras.backend.stop_gradient", "keras.ops.stop_gradient"}
ARGMAX_LIKE = {"argmax", "argmin", "argsort", "searchsorted", "histogram_fixed_width", "bucketize"}
ZERO_GRAD = {"round", "floor", "ceil", "sign", "rint", "floordiv", "floor_div", "truncatediv"}
PY_FUNCS = {"tensorflow.numpy_function", "tensorflow.py_func",
            "tensorflow.compat.v1.py_func", "keras.backend.eval", "keras.backend.get_value",
            "keras.ops.convert_to_numpy"}
OPTIMIZER_APPLY = ("apply_gradients", "apply")
WEIGHTLESS_LAYERS = frozenset({
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
    "AveragePooling2D", "AveragePooling3D", "Flatten", "Reshape", "Permute", "RepeatVector", "Dropout",
    "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "Activation", "ReLU", "Softmax",
    "LeakyReLU", "ELU", "Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Dot",
    "Lambda", "Cropping1D", "Cropping2D", "ZeroPadding1D", "ZeroPadding2D", "UpSampling1D", "UpSampling2D",
    "Identity", "Masking", "Rescaling", "Resizing", "CenterCrop", "Input", "InputLayer"})
CALL_METHODS = ("call", "__call__")
# methods that keep their argument beyond the call (a loss term, a cache for the training step)
ESCAPING = frozenset({"add_loss", "add_update", "append", "extend", "insert", "update", "setdefault", "put"})


@dataclass(eq=False)
class VarInfo:
    id: str
    node: ast.Call
    trainable: bool
    dtype: str | None
    name: str | None = None
    cls: str | None = None  # owning class for `self.x = ...`
    attr: str | None = None
    per_step: str | None = None  # why this creation happens on every step (None: once)
    listed: list = field(default_factory=list)  # gradient/apply nodes that name it as a source
    read_in_tape: bool = False
    cast_in_tape: bool = False  # an int variable cast to float where a loss is computed: meant as a parameter
    watched: bool = False  # handed to `tape.watch`: differentiated even when trainable=False


@dataclass(eq=False)
class TapeInfo:
    node: ast.Call  # the GradientTape(...) call
    persistent: bool
    with_node: ast.With | None = None
    name: str | None = None
    watched: set = field(default_factory=set)  # names watched
    watch_unknown: bool = False  # watch() called on something we cannot name (a helper's loop variable...)
    auto_watch: bool = True  # False: `GradientTape(watch_accessed_variables=False)`
    watched_ids: set = field(default_factory=set)  # origins of what watch() was given
    watch_nodes: list = field(default_factory=list)  # the watch() calls
    watch_opaque: bool = False  # watch() given something whose variables we cannot tell
    calls: list = field(default_factory=list)  # GradCall in evaluation order (dedup by node)


@dataclass(eq=False)
class GradCall:
    node: ast.Call
    tape: TapeInfo
    method: str
    target: Val
    sources: list  # [(expr node or None, Val)]
    meant: frozenset | None  # origins meant to train (None: the whole model)
    in_loop: bool
    has_unconnected: bool
    applied: bool = False


@dataclass
class LostCut:
    cut: Cut
    lost: frozenset
    sink: ast.AST  # gradient call, or the `call` method whose output loses it
    sink_kind: str  # "gradient" | "call"


@dataclass
class TFFacts:
    variables: dict = field(default_factory=dict)  # id -> VarInfo
    origin_names: dict = field(default_factory=dict)
    tapes: dict = field(default_factory=dict)  # call node -> TapeInfo
    grad_calls: dict = field(default_factory=dict)  # node -> GradCall (last evaluation)
    lost_cuts: dict = field(default_factory=dict)  # cut node -> LostCut (merged)
    unwatched: dict = field(default_factory=dict)  # (grad node, source repr) -> (GradCall, expr, Val)
    optimizer_vars: list = field(default_factory=list)  # (apply node, Val)
    rebinds: dict = field(default_factory=dict)  # stmt -> (name, VarInfo, in_loop)
    outside_targets: dict = field(default_factory=dict)  # gradient node -> (name, assignment node)
    after_targets: dict = field(default_factory=dict)  # gradient node -> (name, assignment node, with node)
    # gradient node -> (input name, its assignment before the tape, target name, with node)
    forward_outside: dict = field(default_factory=dict)
    misapplied: dict = field(default_factory=dict)  # gradient node -> (GradCall, apply node, variables expr)
    layer_labels: dict = field(default_factory=dict)  # module origin -> its `name=` argument
    call_live: dict = field(default_factory=dict)  # class name -> origins that reach what its call returns
    call_incomplete: set = field(default_factory=set)  # classes whose call was not followed completely
    classes: dict = field(default_factory=dict)
    interp: object = None

    def name(self, origin: str) -> str:
        return self.origin_names.get(origin, origin)

    def names(self, origins) -> list[str]:
        named = {self.name(o) for o in origins if o in self.origin_names}
        if named:
            return sorted(named)
        return sorted({self.describe(o) for o in origins})

    def describe(self, origin: str) -> str:
        kind, _, where = origin.partition("@")
        line = where.split(":")[0]
        label = self.layer_labels.get(origin.split("#")[0])
        if label:
            return f"the layer `{label}` created on line {line}"
        return f"the {'layer' if kind == 'module' else 'variable'} created on line {line}"


class TFInterp(Interp):
    framework = "tensorflow"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.facts = TFFacts()
        self.tapes: list[TapeInfo] = []
        self.initialized: set = set()
        self.lambda_layers: dict = {}
        self.metric_inputs: dict = {}
        self.module_kinds: dict = {}  # module origin -> Keras class name
        self.functional: list = []  # functional models: `keras.Model(inputs, outputs)`  # metric creation node -> what update_state accumulated
        self.truncated = 0  # calls not inlined (recursion, depth, budget): what they compute is approximate
        self.call_scopes: list = []  # (call method, ClassInfo, origins kept, truncated count) being evaluated
        for info in self.classes.values():
            self.facts.classes[info.node.name] = info

    # ------------------------------------------------------------- classes
    def is_module_class(self, info: ClassInfo, seen=None) -> bool:
        seen = seen or set()
        if info.node.name in seen:
            return False
        seen.add(info.node.name)
        for base in info.bases:
            if base in MODULE_BASES or base.endswith((".Layer", ".Model", ".Module")):
                return True
            local = self.classes.get(base)
            if local is not None and self.is_module_class(local, seen):
                return True
        return False

    def instance_val(self, cls: ClassInfo, node) -> Val:
        val = Val(kind="instance", ref=cls, node=node)
        if cls.node.name not in self.initialized:
            self.initialized.add(cls.node.name)
            for meth in ("__init__", "build"):
                fn = cls.methods.get(meth)
                if fn is not None and fn not in self.stack:
                    self.standalone(fn, cls)
        return val

    def after_module(self):
        for info in self.classes.values():
            if info.node.name not in self.initialized:
                self.instance_val(info, None)
        super().after_module()

    def param_val(self, fn, name, index) -> Val:
        """A parameter of a function analysed on its own: a model if it is called or asked for variables."""
        pid = f"param:{name}@{fn.lineno}"
        self.facts.origin_names.setdefault(pid, name)
        return Val(kind="param", ref=pid)

    def context_key(self):
        return (tuple(id(t) for t in self.tapes),)

    def invoke(self, ref: FuncRef, args: list, kwargs: dict, *, call_node=None, standalone=False,
               extra: tuple = ()) -> Val:
        fn = ref.node
        if fn in self.stack or len(self.stack) >= MAX_DEPTH or self.budget <= 0:
            self.truncated += 1
        result = super().invoke(ref, args, kwargs, call_node=call_node, standalone=standalone, extra=extra)
        if call_node is not None and not standalone and result.kind == "module":
            result = self.per_call(result, fn, call_node)
        return result

    def per_call(self, val: Val, fn, call_node) -> Val:
        """A model built by a factory (`teacher = make_net(); student = make_net()`): one per call site."""
        first, last = fn.lineno, fn.end_lineno or fn.lineno
        suffix = f"#{call_node.lineno}:{call_node.col_offset}"

        def local(origin: str) -> bool:
            if not origin.startswith("module@"):
                return False
            where = origin.rsplit("#", 1)[-1].removeprefix("module@")
            line = where.split(":", 1)[0]
            return line.isdigit() and first <= int(line) <= last

        def rename(origins: frozenset) -> frozenset:
            return frozenset(o + suffix if local(o) else o for o in origins)

        if not any(local(o) for o in val.origins):
            return val
        cuts = frozenset(Cut(c.node, c.op, c.kind, rename(c.origins)) if any(local(o) for o in c.origins) else c
                         for c in val.cuts)
        ref = val.ref
        if isinstance(ref, str) and local(ref):
            ref = ref + suffix
            if val.ref in self.lambda_layers:
                self.lambda_layers[ref] = self.lambda_layers[val.ref]
        return replace(val, origins=rename(val.origins), cuts=cuts, ref=ref)

    # ------------------------------------------------------------- bindings
    def on_bind_name(self, name, val, stmt):
        old = self.lookup(name)
        if old is not None and old.kind == "var" and isinstance(old.ref, VarInfo) and not isinstance(
                val.ref, VarInfo) and old.ref.id in val.origins and isinstance(stmt, (ast.Assign, ast.AugAssign)):
            loop = self.enclosing(stmt, (ast.For, ast.While, ast.FunctionDef, ast.AsyncFunctionDef))
            self.facts.rebinds.setdefault(stmt, (name, old.ref, isinstance(loop, (ast.For, ast.While))))
        self._name_origin(val, name)

    def _name_origin(self, val: Val, name: str, cls: str | None = None, attr: str | None = None):
        if val.kind in ("var", "module", "watched") and isinstance(val.ref, (VarInfo, str)):
            key = val.ref.id if isinstance(val.ref, VarInfo) else val.ref
            if key not in self.facts.origin_names:
                self.facts.origin_names[key] = name
                if isinstance(val.ref, VarInfo):
                    val.ref.name = name
                    val.ref.cls = cls
                    val.ref.attr = attr

    def on_attr_store(self, target, base, val, stmt):
        if self.call_scopes:
            self.escape(val)
        if base.kind == "instance" and isinstance(base.ref, ClassInfo):
            self._name_origin(val, f"{base.ref.node.name}.{target.attr}", base.ref.node.name, target.attr)
            old = base.ref.attrs.get(target.attr)
            if old is not None and old.kind == "var" and isinstance(old.ref, VarInfo) and not isinstance(
                    val.ref, VarInfo) and old.ref.id in val.origins and isinstance(stmt, (ast.Assign, ast.AugAssign)):
                # `self.w = self.w - lr * g`: the attribute outlives the call, so a method that differentiates
                # with respect to it and rebinds it breaks every later step, loop or not
                loop = self.enclosing(stmt, (ast.For, ast.While, ast.FunctionDef, ast.AsyncFunctionDef))
                fn = self.enclosing(stmt, (ast.FunctionDef, ast.AsyncFunctionDef))
                repeated = isinstance(loop, (ast.For, ast.While)) or (
                    fn is not None and fn.name not in ("__init__", "build") and self.has_training(fn, tape_only=True))
                self.facts.rebinds.setdefault(stmt, (ast.unparse(target), old.ref, repeated))
        super().on_attr_store(target, base, val, stmt)

    # ------------------------------------------------------------- tapes
    def with_enter(self, item, val):
        if val.kind == "tape" and isinstance(val.ref, TapeInfo):
            tape = val.ref
            with_node = self.parents.get(item)
            if isinstance(with_node, ast.With):
                tape.with_node = with_node
            if isinstance(item.optional_vars, ast.Name):
                tape.name = item.optional_vars.id
            elif isinstance(item.context_expr, ast.Name):
                tape.name = item.context_expr.id
            self.tapes.append(tape)
            return val
        return None

    def with_exit(self, entered):
        if entered is not None and self.tapes and self.tapes[-1] is entered.ref:
            self.tapes.pop()

    def lookup(self, name):
        val = super().lookup(name)
        if val is not None and val.kind == "var" and self.tapes and isinstance(val.ref, VarInfo):
            val.ref.read_in_tape = True
        return val

    # ------------------------------------------------------------- calls
    def call(self, node, qual, func, args, kwargs):
        qual = qual or ""
        if self.call_scopes and func.kind != "func" and any(
                a.kind == "func" for a in list(args) + list(kwargs.values())):
            self.truncated += 1  # `tf.map_fn(lambda t: self.proj(t), x)`: the function's body is not followed
        method = func.ref[1] if func.kind == "method" and isinstance(func.ref, tuple) else None
        base = func.ref[2] if method else None
        if qual == "tensorflow.Variable" or qual.endswith(("tensorflow.compat.v1.Variable",)):
            return self.new_variable(node, args, kwargs)
        if method == "add_weight" or (method == "add_variable" and base is not None and base.kind == "instance"):
            return self.new_variable(node, args, kwargs, weight=True)
        if qual == "tensorflow.GradientTape":
            persistent = kwarg(node, "persistent", 0)
            is_persistent = not (persistent is None or (isinstance(persistent, ast.Constant) and not persistent.value))
            tape = self.facts.tapes.get(node)
            if tape is None:
                tape = TapeInfo(node, is_persistent)
                auto = kwarg(node, "watch_accessed_variables", 1)
                tape.auto_watch = not (isinstance(auto, ast.Constant) and auto.value is False)
                self.facts.tapes[node] = tape
            return Val(kind="tape", ref=tape)
        if base is not None and base.kind == "tape" and isinstance(base.ref, TapeInfo):
            return self.tape_method(node, base.ref, method, args, kwargs)
        if base is not None and self.is_metric(base) and method in ("update_state", "result"):
            return self.metric_use(node, base, method, args, kwargs)
        if self.is_metric(func):  # `metric(y, pred)` updates the state and returns `result()`
            self.metric_use(node, func, "update_state", args, kwargs)
            return self.metric_use(node, func, "__call__", args, kwargs)
        if method in ("fit", "train_on_batch") and base is not None and base.kind == "module":
            self.fit_sink(node, base)
            return Val(kind="unknown")
        if method in OPTIMIZER_APPLY and args:
            self.optimizer_apply(node, args[0] if method == "apply_gradients" else join(*args[:1]), args)
            return Val(kind="unknown")
        if method == "minimize" and len(args) >= 2:
            self.facts.optimizer_vars.append((node, args[1]))
            return Val()
        if qual in STOP_GRADIENT:
            return self.cut(node, "tf.stop_gradient", "stop_gradient", args)
        if qual == "tensorflow.py_function":  # records the TensorFlow ops its function runs: differentiable
            vals = [flat(a) for a in args[1:2]] + [flat(v) for k, v in kwargs.items() if k == "inp"]
            return replace(join(*vals), kind="tensor", node=node) if vals else Val(kind="tensor")
        if qual in PY_FUNCS:
            return self.cut(node, ast.unparse(node.func), "numpy", args + list(kwargs.values()))
        if method == "numpy" and base is not None:
            return self.cut(node, ".numpy()", "numpy", [base], out="numpy")
        if method in ("item", "tolist") and base is not None:
            return self.cut(node, f".{method}()", "python", [base], out="numpy")
        if qual in ("float", "int", "bool") and args:
            return self.cut(node, f"{qual}()", "python", args[:1], out="pyfloat" if qual == "float" else "pyint")
        if qual.startswith(("numpy.", "scipy.", "math.")):
            return self.cut(node, "np." + qual.split(".", 1)[1] if qual.startswith("numpy.") else qual, "numpy",
                            args + list(kwargs.values()), out="numpy")
        if qual.startswith("keras.") or qual.startswith("tensorflow."):
            return self.tf_call(node, qual, args, kwargs)
        if method and base is not None and base.kind == "param" and isinstance(base.ref, str) and method not in (
                "trainable_variables", "numpy", "item", "tolist", "gradient", "watch"):
            vals = [flat(a) for a in args] + [flat(v) for v in kwargs.values()]
            out = join(*vals) if vals else Val()  # `model.call(x)`, `model.predict_step(x)` on a parameter
            return Val(out.origins | {base.ref}, out.cuts, "tensor", None, node)
        if func.kind == "param" and isinstance(func.ref, str):  # `model(x)` on a parameter
            vals = [flat(a) for a in args] + [flat(v) for v in kwargs.values()]
            out = join(*vals) if vals else Val()
            return Val(out.origins | {func.ref}, out.cuts, "tensor", None, node)
        if func.kind == "callable":
            vals = [flat(a) for a in args] + [flat(v) for v in kwargs.values()]
            return replace(join(*vals), kind="tensor") if vals else Val(kind="tensor")
        if func.kind == "module":
            fn = self.lambda_layers.get(func.ref)
            if fn is not None and isinstance(fn.ref, FuncRef):  # keras.layers.Lambda(f)(x) runs f(x)
                out = self.invoke(fn.ref, list(args), {}, call_node=node)
                return replace(flat(out), origins=flat(out).origins | func.origins, kind="tensor")
            out = join(func, *(flat(a) for a in args), kind="tensor")
            return replace(out, dtype="float")
        if method in ("astype",) and args:
            if dtype_of(node.args[0], self.names) == "int":
                return self.cut(node, ".astype(int)", "int_cast", [base])
        if method in ("append", "extend") and base is not None and self.list_grow(node, method, base, args):
            return Val(kind="none")
        if self.call_scopes and method in ESCAPING:
            for val in list(args) + list(kwargs.values()):
                self.escape(val)
        if method in ("assign", "assign_add", "assign_sub") and base is not None:
            self.assign_in_tape(node, method, base, args)
            return Val(kind="unknown")
        return None

    def fit_sink(self, node, model: Val):
        """`model.fit(...)`: the loss is attached to the model's output, so a cut inside it loses what is
        upstream — unless another model built in the file trains those layers through its own output."""
        elsewhere = set()
        for other in self.functional:
            if other.ref != model.ref and not (isinstance(other.ref, str) and isinstance(model.ref, str) and
                                               other.ref.split("#")[0] == model.ref.split("#")[0]):
                elsewhere |= other.origins
        meant = set()
        for cut in model.cuts:
            for o in cut.origins:
                kind = self.module_kinds.get(o.split("#")[0])
                if o.startswith("module@") and kind is None or kind in WEIGHTLESS_LAYERS:
                    continue
                if not covered(o, frozenset(elsewhere)):
                    meant.add(o)
        self.record_lost(model, frozenset(meant), node, "fit")

    @staticmethod
    def is_metric(val: Val) -> bool:
        return val.kind == "callable" and isinstance(val.ref, tuple) and val.ref[:1] == ("metric",)

    def metric_use(self, node, metric: Val, method, args, kwargs) -> Val:
        """A Keras metric object: `update_state` accumulates into variables, `result()` reads them back."""
        key = metric.ref[1]
        if method == "update_state":
            vals = [flat(a) for a in args] + [flat(v) for v in kwargs.values()]
            self.metric_inputs[key] = join(self.metric_inputs.get(key, Val()), *vals)
            return Val(kind="unknown")
        state = self.metric_inputs.get(key, Val())
        func = node.func.value if method == "result" and isinstance(node.func, ast.Attribute) else node.func
        op = f"{ast.unparse(func)}.result()" if method == "result" else f"{ast.unparse(func)}(...)"
        return self.cut(node, op, "metric", [state], dtype="float")

    # ------------------------------------------------------------- lists of variables
    @staticmethod
    def var_like(val: Val) -> bool:
        """A variable, a model's variable list, or a literal list of those."""
        if isinstance(val.ref, VarInfo) or val.kind == "varlist":
            return True
        return val.kind == "seq" and val.items is not None and all(TFInterp.var_like(v) for _, v in val.items)

    @staticmethod
    def parts(val: Val) -> list:
        return [v for _, v in val.items] if val.items is not None else [val]

    def var_seq(self, parts: list, node=None) -> Val:
        return Val(frozenset().union(*(v.origins for v in parts)) if parts else EMPTY,
                   frozenset().union(*(v.cuts for v in parts)) if parts else EMPTY,
                   "seq", None, node, tuple(enumerate(parts)))

    def binop(self, a: Val, b: Val, node) -> Val:
        """`model.trainable_variables + [temperature]` keeps its parts (the sources of a gradient)."""
        if isinstance(getattr(node, "op", None), ast.Add) and self.var_like(a) and self.var_like(b) and (
                a.items is not None or b.items is not None or a.kind == b.kind == "varlist"):
            return self.var_seq(self.parts(a) + self.parts(b))
        if isinstance(getattr(node, "op", None), ast.FloorDiv) and "tensor" in (flat(a).kind, flat(b).kind) and \
                "int" not in (flat(a).dtype, flat(b).dtype):
            # float `//` is FloorDiv, which has no registered gradient (`%` has one)
            return self.cut(node, "//", "zero_grad", [a, b])
        return super().binop(a, b, node)

    def e_List(self, node):
        if any(isinstance(e, ast.Starred) for e in node.elts):  # `[*model.trainable_variables, temperature]`
            parts = []
            for e in node.elts:
                val = self.eval(e.value if isinstance(e, ast.Starred) else e)
                parts.append(val)
            if all(self.var_like(v) for v in parts):
                out = []
                for e, val in zip(node.elts, parts):
                    out.extend(self.parts(val) if isinstance(e, ast.Starred) else [val])
                return self.var_seq(out, node)
            return join(*(flat(v) for v in parts), kind="seq")
        return super().e_List(node)

    e_Tuple = e_List

    def list_grow(self, node, method, base: Val, args) -> bool:
        """`params.append(temperature)` / `params.extend(model.trainable_variables)` on a literal list."""
        target = node.func.value if isinstance(node.func, ast.Attribute) else None
        if not isinstance(target, ast.Name) or target.id not in self.frame.env or base.kind != "seq" or \
                base.items is None or len(args) != 1 or not self.var_like(base) or not self.var_like(args[0]):
            return False
        added = [args[0]] if method == "append" else self.parts(args[0])
        self.frame.env[target.id] = self.var_seq(self.parts(base) + added, base.node)
        return True

    def assign_in_tape(self, node, method, base: Val, args):
        """`v.assign(expr)` under a tape: the tape does not record it, so `expr`'s origins are cut from `v`."""
        if not self.tapes or not args or not isinstance(base.ref, VarInfo):
            return
        value = flat(args[0])
        origins = frozenset(o for o in value.origins if self.trains(o) and o != base.ref.id)
        target = node.func.value if isinstance(node.func, ast.Attribute) else None
        if not origins or not isinstance(target, ast.Name):
            return
        cut = Cut(node, f".{method}()", "assign", origins)
        self.frame.env[target.id] = replace(base, cuts=base.cuts | value.cuts | {cut})

    def tf_call(self, node, qual, args, kwargs):
        tail = qual.rsplit(".", 1)[-1]
        if qual in ("keras.Model", "keras.models.Model") and (args or kwargs):
            model = self.new_module(node, args, kwargs)
            self.functional.append(model)
            return model
        if qual in ("keras.Sequential", "keras.models.Sequential", "keras.Model", "keras.models.Model",
                    "keras.Input", "keras.layers.Input") or qual.startswith(("keras.layers.", "keras.applications.")):
            if qual in ("keras.Input", "keras.layers.Input"):
                return Val(kind="tensor", dtype="float")
            if qual == "keras.layers.Lambda" and args and args[0].kind == "func":
                module = self.new_module(node, [], {})
                self.lambda_layers[module.ref] = args[0]
                return module
            return self.new_module(node, args, kwargs)
        if qual in ("keras.models.clone_model", "keras.models.load_model", "keras.saving.load_model"):
            return self.new_module(node, [], {})  # a new model: its own variables
        if qual.startswith(("keras.optimizers.", "keras.losses.", "keras.metrics.", "keras.initializers.")):
            if tail[:1].isupper():
                return Val(kind="callable", ref=("metric", node) if qual.startswith("keras.metrics.") else None)
            vals = [flat(a) for a in args] + [flat(v) for v in kwargs.values()]
            return replace(join(*vals), kind="tensor") if vals else Val(kind="tensor")
        if tail == "cast" and len(node.args) >= 2 or (tail == "cast" and kwarg(node, "dtype")):
            dt = dtype_of(kwarg(node, "dtype", 1), self.names)
            if dt == "int":
                return self.cut(node, "tf.cast(..., int)", "int_cast", args[:1], dtype="int")
            src = flat(args[0]) if args else Val()
            if dt == "float" and isinstance(src.ref, VarInfo) and src.ref.dtype == "int" and self.in_training():
                src.ref.cast_in_tape = True
            return Val(src.origins, src.cuts, "tensor", dt)
        if tail in ARGMAX_LIKE:
            return self.cut(node, f"tf.{tail}", "int_cast", args[:1], dtype="int")
        if tail in ZERO_GRAD:
            return self.cut(node, f"tf.{tail}", "zero_grad", args[:2] if "div" in tail else args[:1])
        if qual in ("tensorflow.GradientTape",):
            return None
        vals = [flat(a) for a in args] + [flat(v) for v in kwargs.values()]
        out = join(*vals, kind="tensor") if vals else Val(kind="tensor")
        position = {"zeros": 1, "ones": 1, "constant": 1, "fill": None, "convert_to_tensor": 1, "eye": None}
        dt = dtype_of(kwarg(node, "dtype", position.get(tail)), self.names)
        if dt is None and tail in ("constant", "convert_to_tensor") and node.args:
            dt = literal_dtype(node.args[0])
        if dt is None and tail in ("fill",) and len(node.args) > 1:
            dt = literal_dtype(node.args[1])
        return replace(out, kind="tensor", dtype=dt or (out.dtype if out.dtype != "bool" else None), node=node)

    def new_variable(self, node, args, kwargs, weight=False):
        trainable_node = kwarg(node, "trainable")
        trainable = not (isinstance(trainable_node, ast.Constant) and trainable_node.value is False)
        dtype = dtype_of(kwarg(node, "dtype"), self.names)
        init_node = kwarg(node, "initial_value", None if weight else 0)
        init = kwargs.get("initial_value") or (args[0] if args and not weight else None)
        if dtype is None and not weight:
            dtype = literal_dtype(init_node) or (init.dtype if init is not None else None)
        if weight and dtype is None:
            dtype = "float"
        vid = f"var@{node.lineno}:{node.col_offset}"
        info = self.facts.variables.get(vid)
        if info is None:
            info = VarInfo(vid, node, trainable, dtype)
            self.facts.variables[vid] = info
        if info.per_step is None:
            info.per_step = self.per_step_reason(node)
        carries = trainable and dtype != "int"
        return Val(frozenset({vid}) if carries else EMPTY, init.cuts if init is not None else EMPTY, "var",
                   dtype, node, None, False, False, info)

    def in_training(self) -> bool:
        """Under a tape, or in a layer's `call`/`__call__` (which runs under the caller's tape)."""
        if self.tapes:
            return True
        return any(isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name in CALL_METHODS
                   for fn in self.stack)

    def per_step_reason(self, node) -> str | None:
        if self.lazy_guard(node):
            return None
        if self.tapes:
            looped = self.loop_depth > 0 or any(
                isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and self.step_function(fn) for fn in self.stack)
            return "inside the GradientTape, on every step" if looped else "inside the GradientTape"
        for fn in reversed(self.stack):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name in CALL_METHODS:
                cls = self.enclosing(fn, (ast.ClassDef,))
                info = self.classes.get(cls.name) if isinstance(cls, ast.ClassDef) else None
                if info is not None and self.is_module_class(info):
                    return f"in `{fn.name}()`, on every call of the layer"
        loop = self.enclosing(node, (ast.For, ast.While, ast.FunctionDef, ast.AsyncFunctionDef))
        if isinstance(loop, (ast.For, ast.While)) and self.has_training(loop):
            return "inside the training loop"
        fn = self.enclosing(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        if fn is not None and fn.name not in ("__init__", "build") and self.step_function(fn):
            return f"in `{fn.name}()`, which runs one training step per call"
        return None

    def step_function(self, fn) -> bool:
        """Does `fn` run a tape and an update once per call (a train step), not a whole training loop?"""
        if not any(isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr in (
                "apply_gradients", "minimize", "assign_sub", "assign_add", "apply") for sub in ast.walk(fn)):
            return False
        for sub in ast.walk(fn):
            if isinstance(sub, ast.Call) and (self.names.qualname(sub.func) or "") == "tensorflow.GradientTape":
                loop = self.enclosing(sub, (ast.For, ast.While, ast.FunctionDef, ast.AsyncFunctionDef))
                if loop is fn:
                    return True
        return False

    def lazy_guard(self, node) -> bool:
        cur = self.parents.get(node)
        while cur is not None and not isinstance(cur, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module)):
            if isinstance(cur, (ast.If, ast.IfExp)):
                text = ast.dump(cur.test)
                if "value=None" in text or "built" in text or "hasattr" in text or "'_" in text:
                    return True
            cur = self.parents.get(cur)
        return False

    def has_training(self, scope, tape_only=False) -> bool:
        for sub in ast.walk(scope):
            if isinstance(sub, ast.Call):
                q = self.names.qualname(sub.func) or ""
                if q == "tensorflow.GradientTape":
                    return True
                if not tape_only and isinstance(sub.func, ast.Attribute) and sub.func.attr == "apply_gradients":
                    return True
        return False

    def new_module(self, node, args, kwargs):
        mid = f"module@{node.lineno}:{node.col_offset}"
        qual = self.names.qualname(node.func) if isinstance(node, ast.Call) else None
        if qual:
            self.module_kinds[mid] = qual.rsplit(".", 1)[-1]
            label = kwarg(node, "name")
            if isinstance(label, ast.Constant) and isinstance(label.value, str):
                self.facts.layer_labels[mid] = label.value
        inner = join(*(flat(a) for a in args), *(flat(v) for v in kwargs.values())) if (args or kwargs) else Val()
        trainable_node = kwarg(node, "trainable")
        if isinstance(trainable_node, ast.Constant) and trainable_node.value is False:
            return Val(EMPTY, inner.cuts, "module", "float", node, None, False, False, mid)
        return Val(inner.origins | {mid}, inner.cuts, "module", "float", node, None, False, False, mid)

    def cut(self, node, op, kind, inputs, *, out="tensor", dtype=None) -> Val:
        src = join(*(flat(v) for v in inputs)) if inputs else Val()
        origins = frozenset(o for o in src.origins if self.trains(o))
        cuts = src.cuts
        if origins:
            cuts = cuts | {Cut(node, op, kind, origins)}
        return Val(EMPTY, cuts, out, dtype or src.dtype, node)

    def trains(self, origin: str) -> bool:
        info = self.facts.variables.get(origin)
        if info is not None:
            return info.trainable and info.dtype != "int"
        return True

    def tape_method(self, node, tape: TapeInfo, method, args, kwargs):
        if method == "watch" and node.args:
            expr = node.args[0]
            if node not in tape.watch_nodes:
                tape.watch_nodes.append(node)
            for val in self.parts(args[0]) if args else ():
                if isinstance(val.ref, VarInfo):
                    val.ref.watched = True
                    tape.watched_ids.add(val.ref.id)
                tape.watched_ids.update(val.origins)
                if val.kind in ("unknown", "param") or (val.kind == "seq" and val.items is None):
                    tape.watch_opaque = True
            here = self.stack[-1] if self.stack else None
            home = self.enclosing(tape.with_node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) \
                if tape.with_node is not None else here
            if here is not home or not isinstance(expr, (ast.Name, ast.Attribute, ast.List, ast.Tuple)):
                tape.watch_unknown = True
            names = [e for e in (expr.elts if isinstance(expr, (ast.List, ast.Tuple)) else [expr])]
            for e in names:
                key = ast.unparse(e) if hasattr(ast, "unparse") else None
                if key:
                    tape.watched.add(key)
                if isinstance(e, ast.Name):
                    old = self.lookup(e.id) or Val()
                    wid = f"watch@{e.lineno}:{e.col_offset}"
                    self.facts.origin_names.setdefault(wid, e.id)
                    self.frame.env[e.id] = Val(old.origins | {wid}, old.cuts, "watched", old.dtype, old.node,
                                               None, False, False, wid)
            return Val()
        if method in ("gradient", "jacobian", "batch_jacobian") and args:
            return self.gradient(node, tape, method, args, kwargs)
        if method in ("stop_recording", "reset"):
            return Val()
        return Val()

    def gradient(self, node, tape, method, args, kwargs):
        target = args[0]
        src_node = kwarg(node, "sources", 1)
        src_val = kwargs.get("sources") or (args[1] if len(args) > 1 else Val())
        sources = self.source_list(src_node, src_val)
        meant: set | None = set()
        for _, val in sources:
            if isinstance(val.ref, VarInfo):
                meant.add(val.ref.id)
            elif val.kind in ("watched", "tensor", "varlist", "module") and val.origins:
                meant |= val.origins
                for cut in val.cuts:
                    meant |= cut.origins
            elif val.kind in ("tensor", "numpy", "pyfloat", "pyint"):
                continue
            else:
                meant = None
                break
        loop = self.enclosing(node, (ast.For, ast.While, ast.FunctionDef, ast.Lambda))
        in_loop = isinstance(loop, (ast.For, ast.While)) and (
            tape.with_node is None or not self.is_ancestor(loop, tape.with_node))
        call = GradCall(node, tape, method, flat(target), sources, frozenset(meant) if meant is not None else None,
                        in_loop, kwarg(node, "unconnected_gradients") is not None)
        old = self.facts.grad_calls.get(node)
        if old is not None:
            call.target = join(old.target, call.target)
        self.facts.grad_calls[node] = call
        if all(c.node is not node for c in tape.calls):
            tape.calls.append(call)
        else:
            tape.calls = [call if c.node is node else c for c in tape.calls]
        for _expr, val in sources:
            if isinstance(val.ref, VarInfo) and node not in val.ref.listed:
                val.ref.listed.append(node)
        self.record_lost(call.target, call.meant, node, "gradient")
        self.check_outside(node, tape)
        items = tuple((i, Val(kind="grad", ref=call)) for i in range(len(sources))) if src_node is not None and \
            isinstance(src_node, (ast.List, ast.Tuple)) else None
        return Val(kind="grads", ref=call, items=items)

    def check_outside(self, node, tape: TapeInfo):
        """A target computed before the tape started recording (and not recomputed inside it)."""
        target = node.args[0] if node.args else None
        with_node = tape.with_node
        if not isinstance(target, ast.Name) or with_node is None or self.is_ancestor(with_node, node):
            return
        fn = self.enclosing(with_node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if fn is not self.enclosing(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        name = target.id
        scope = fn.body if fn is not None else self.tree.body
        if self.check_after(node, tape, name, scope):
            return
        inside = any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store)
                     for n in ast.walk(with_node))
        if inside:
            self.check_forward_outside(node, tape, name, scope)
            return
        before = None
        for stmt in ast.walk(ast.Module(body=scope, type_ignores=[])):
            if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and stmt.lineno < with_node.lineno:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                if any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)):
                    before = stmt if before is None or stmt.lineno > before.lineno else before
        if before is None or not self.eval_origins(before):
            return
        self.facts.outside_targets.setdefault(node, (name, before))

    def check_forward_outside(self, node, tape: TapeInfo, name: str, scope):
        """The target is computed in the tape only from values computed before it (`pred = model(x)` first)."""
        with_node = tape.with_node
        stores: dict = {}  # name -> assignments inside the with block
        for stmt in ast.walk(with_node):
            if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            stores.setdefault(n.id, []).append(stmt)
            elif isinstance(stmt, (ast.For, ast.While, ast.If, ast.Try, ast.With, ast.FunctionDef, ast.Lambda)) and \
                    stmt is not with_node:
                return  # keep to a straight-line block
        slice_names, todo, stmts = {name}, [name], []
        while todo:
            for stmt in stores.get(todo.pop(), []):
                if stmt in stmts:
                    continue
                stmts.append(stmt)
                for n in ast.walk(stmt.value) if stmt.value is not None else ():
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in stores and \
                            n.id not in slice_names:
                        slice_names.add(n.id)
                        todo.append(n.id)
        outside = []
        for stmt in stmts:
            for n in ast.walk(stmt.value):
                if isinstance(n, ast.Call):
                    qual = self.names.qualname(n.func) or ""
                    if not qual.startswith(("tensorflow.", "keras.")) and (
                            self.eval(n.func).kind != "callable" or self.is_metric(self.eval(n.func))):
                        return  # a model or helper called inside the tape: recorded
                elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load) and \
                        not (self.names.qualname(n) or "").startswith(("tensorflow.", "keras.")):
                    if flat(self.eval(n)).origins:
                        return
                elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in stores:
                    val = self.lookup(n.id)
                    if val is None or not any(self.trains(o) for o in flat(val).origins):
                        continue
                    if val.kind in ("var", "module", "varlist", "seq", "dict", "watched", "param", "instance"):
                        return
                    outside.append(n.id)
        if not outside:
            return
        first = outside[0]
        before = None
        for stmt in ast.walk(ast.Module(body=scope, type_ignores=[])):
            if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                if any(isinstance(n, ast.Name) and n.id == first for t in targets for n in ast.walk(t)):
                    if stmt.lineno >= with_node.lineno or before is not None:
                        return  # assigned more than once, or after the tape started
                    before = stmt
        if before is None or not self.records_op(before):
            return
        call = self.facts.grad_calls.get(node)
        val = flat(self.lookup(first))
        if call is not None and call.meant is not None and not (val.origins & call.meant) and not any(
                covered(o, call.meant) for o in val.origins):
            return
        self.facts.forward_outside.setdefault(node, (first, before, name, with_node))

    def check_after(self, node, tape: TapeInfo, name: str, scope) -> bool:
        """The target's last assignment runs an operation after the tape's `with` block ended."""
        with_node = tape.with_node
        last = None
        stack = list(scope)
        while stack:
            stmt = stack.pop()
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            stack.extend(ast.iter_child_nodes(stmt))
            if not isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)) or stmt.lineno >= node.lineno:
                continue
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)) and (
                    last is None or stmt.lineno > last.lineno):
                last = stmt
        if last is None or last.lineno <= (with_node.end_lineno or with_node.lineno) or \
                self.enclosing(last, (ast.With, ast.AsyncWith, ast.FunctionDef, ast.AsyncFunctionDef,
                                      ast.Module)) is not self.enclosing(node, (ast.With, ast.AsyncWith,
                                                                                ast.FunctionDef,
                                                                                ast.AsyncFunctionDef, ast.Module)):
            return False
        targets = last.targets if isinstance(last, ast.Assign) else [last.target]
        if not (len(targets) == 1 and isinstance(targets[0], ast.Name) and self.records_op(last)):
            return False
        val = self.lookup(name)
        if val is None or not val.origins or val.kind in ("seq", "varlist", "dict", "grads", "module", "var"):
            return False
        self.facts.after_targets.setdefault(node, (name, last, with_node))
        return True

    def records_op(self, stmt) -> bool:
        """Does this assignment compute a new tensor (an operation a tape would have to record)?"""
        if isinstance(stmt, ast.AugAssign):
            return True
        value = stmt.value
        if isinstance(value, (ast.BinOp, ast.UnaryOp)):
            return True
        if not isinstance(value, ast.Call):
            return False
        qual = self.names.qualname(value.func) or ""
        if qual.startswith(("tensorflow.", "keras.")):
            return True
        func = self.eval(value.func) if isinstance(value.func, (ast.Name, ast.Attribute)) else None
        return func is not None and func.kind in ("callable", "module", "func", "param", "instance")

    def eval_origins(self, stmt) -> bool:
        val = self.lookup(stmt.targets[0].id) if isinstance(stmt, ast.Assign) and isinstance(
            stmt.targets[0], ast.Name) else None
        return bool(val is not None and val.origins)

    def source_list(self, node, val: Val) -> list:
        if node is not None and isinstance(node, (ast.List, ast.Tuple)):
            return [(e, self.eval(e)) for e in node.elts]
        if val.items is not None:
            out = []
            for _, v in val.items:
                out.extend(self.source_list(None, v) if v.items is not None else [(None, v)])
            return out
        return [(node, val)]

    def is_ancestor(self, anc, node) -> bool:
        cur = node
        while cur is not None:
            if cur is anc:
                return True
            cur = self.parents.get(cur)
        return False

    def optimizer_apply(self, node, pairs: Val, args):
        if pairs.kind == "zip" and isinstance(pairs.ref, tuple) and len(pairs.ref) >= 2:
            grads, variables = pairs.ref[0], pairs.ref[1]
            self.facts.optimizer_vars.append((node, variables))
            call = grads.ref if isinstance(grads.ref, GradCall) else None
            if call is not None:
                call.applied = True
            applied = self.source_list(None, variables)
            for _, v in applied:
                if isinstance(v.ref, VarInfo) and node not in v.ref.listed:
                    v.ref.listed.append(node)
            if call is not None:
                self.check_applied_to(call, node, applied)

    def check_applied_to(self, call: GradCall, node, applied: list):
        """`tape.gradient(loss, teacher.trainable_variables)` applied to `student.trainable_variables`."""
        def origins(vals):
            if not vals or not all(v.kind == "varlist" or isinstance(v.ref, VarInfo) for v in vals):
                return EMPTY
            return frozenset().union(*(v.origins for v in vals))

        differentiated = origins([v for _, v in call.sources])
        updated = origins([v for _, v in applied])
        if not differentiated or not updated or any(covered(o, differentiated) for o in updated) or any(
                covered(o, updated) for o in differentiated):
            return
        expr = node.args[0] if node.args else None
        var_expr = expr.args[1] if isinstance(expr, ast.Call) and len(expr.args) >= 2 else None
        self.facts.misapplied.setdefault(call.node, (call, node, var_expr))

    def record_lost(self, target: Val, meant, sink, sink_kind):
        for cut in target.cuts:
            lost = frozenset(o for o in cut.origins
                             if self.trains(o) and not covered(o, target.origins)
                             and (o in meant if meant is not None else not o.startswith("param:")))
            if not lost:
                continue
            old = self.facts.lost_cuts.get(cut.node)
            if old is None:
                self.facts.lost_cuts[cut.node] = LostCut(cut, lost, sink, sink_kind)
            else:
                old.lost = old.lost | lost

    # ------------------------------------------------------------- class sinks
    def enter_function(self, fn, frame, args, kwargs, extra):
        if not isinstance(fn, ast.Lambda) and fn.name in CALL_METHODS and frame.cls is not None and \
                self.is_module_class(frame.cls):
            self.call_scopes.append((fn, frame.cls, set(), self.truncated))

    def escape(self, val: Val):
        """A value kept beyond the return of `call` (`self.add_loss`, `self.x = ...`): it may reach a loss."""
        val = flat(val)
        for _fn, _cls, live, _ in self.call_scopes:
            live |= val.origins
            for cut in val.cuts:
                live |= cut.origins

    def on_compare(self, node, vals):
        if self.call_scopes:  # a mask computed by a layer reaches the output, without a gradient: not unused
            for val in vals:
                self.escape(val)

    def on_subscript_store(self, stmt, target, base, val):
        if self.call_scopes:
            self.escape(val)
        super().on_subscript_store(stmt, target, base, val)

    def leave_function(self, fn, frame, result, extra):
        if isinstance(fn, ast.Lambda) or fn.name not in CALL_METHODS or frame.cls is None:
            return
        if not self.is_module_class(frame.cls):
            return
        if self.call_scopes and self.call_scopes[-1][0] is fn:
            _, cls, live, truncated = self.call_scopes.pop()
            out = flat(result)
            live |= out.origins
            for cut in out.cuts:
                live |= cut.origins
            name = cls.node.name
            self.facts.call_live.setdefault(name, set()).update(live)
            if truncated != self.truncated or self.budget <= 0:
                self.facts.call_incomplete.add(name)
        own = frozenset(v.id for v in self.facts.variables.values() if v.cls == frame.cls.node.name)
        own |= frozenset(val.ref for val in frame.cls.attrs.values() if val.kind == "module" and isinstance(val.ref, str))
        self.record_lost(flat(result), own, fn, "call")

    def attribute(self, node, base):
        if base.kind == "param" and isinstance(base.ref, str) and node.attr in (
                "trainable_variables", "trainable_weights", "variables", "weights"):
            return Val(frozenset({base.ref}), EMPTY, "varlist", None, None, None, False, False, base)
        if base.kind in ("module", "instance") and node.attr in (
                "trainable_variables", "trainable_weights", "variables", "weights"):
            origins = base.origins
            if base.kind == "instance" and isinstance(base.ref, ClassInfo):
                origins = frozenset().union(*(flat(v).origins for v in base.ref.attrs.values())) \
                    if base.ref.attrs else EMPTY
            return Val(origins, base.cuts, "varlist", None, None, None, False, False, base)
        return super().attribute(node, base)


def analyze_tf(ctx) -> TFFacts:
    interp = TFInterp(ctx)
    try:
        interp.run()
    except RecursionError:  # absurdly nested code: keep what was found, never fail the file
        interp.facts.incomplete = True
    interp.facts.interp = interp
    return interp.facts


def tf_facts(ctx) -> TFFacts:
    return ctx.tensorflow
