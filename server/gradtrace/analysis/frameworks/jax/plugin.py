"""JAX's meaning for the interpreter: transforms, tracers, differentiated pytrees and what cuts them.

`jax.grad(f, argnums=...)` makes the differentiated arguments of `f` sources named by its parameters and
their pytree keys (`params.w1`); `jax.jit`/`vmap` make every non-static argument an abstract tracer. A
transformed function is followed at each call, with the caller's arguments (so an integer leaf of a params
dict built elsewhere is seen), through the interpreter's summaries; the transforms in effect travel in the
frame's state. Cuts are `lax.stop_gradient`, argmax-like and rounding ops, integer casts and conversions to
Python or NumPy values; events say what a trace would raise (conversions, control flow on tracers, item
assignment, reverse mode through a dynamic loop) and which variable a step's gradients update.
"""

from __future__ import annotations

import ast
from functools import cached_property

from gradtrace.analysis.core.frames import Frame, FunctionRef
from gradtrace.analysis.core.interpreter import _const_key
from gradtrace.analysis.core.values import (
    EMPTY,
    NONE,
    UNKNOWN,
    Value,
    combine,
    covered,
    cut,
    dedup_cuts,
    flat,
    join,
    last_cuts,
)
from gradtrace.analysis.frameworks.common import (
    FUNCTION_SCOPES,
    FrameworkPlugin,
    binop_dtype,
    call_argument,
    compare_text,
    custom_derivative_call,
    dtype_of,
    in_file,
    joined_dtype,
    literal_dtype,
)
from gradtrace.analysis.frameworks.jax import api, linen
from gradtrace.analysis.frameworks.jax.events import (
    Conversion,
    Differentiated,
    Gradients,
    GradientsApplied,
    GradientsBound,
    GradTransform,
    IntegerInput,
    ItemAssignment,
    LostCut,
    MaskedSingularity,
    NotArrayInput,
    ReverseLoop,
    TracedCondition,
    TraceTransform,
    UnreadLeaf,
)
from gradtrace.analysis.names import dotted
from gradtrace.analysis.where_guard import fractional_power
from gradtrace.records import replace

# errors a test may provoke on purpose (inside `assertRaises`, a `try` that handles them)
EXPECTED_ERRORS = (TracedCondition, Conversion, IntegerInput, NotArrayInput, ItemAssignment, ReverseLoop)

TRANSFORMS = "jax.transforms"  # frame state: the transforms in effect, outermost first
ANY_STATIC = "*"  # static arguments given by a variable: any argument may be static
FIELD = "field"  # `extra` mark: an attribute of a value of unknown type (maybe a static Python value)
PYTREE = "pytree"  # `extra` mark: a Python container of arrays on some path, not one array
TRACED_ARG = "traced_arg"  # `extra` mark: a leaf argument traced by jit/vmap, itself an abstract array
GUARDED = "guarded"  # `extra` mark: `maximum`/`clip`/`abs`/`where` results, safe to differentiate
STOPPED_TREE = "stopped-tree"  # `ref` (STOPPED_TREE, node) of a pytree under tree_map(stop_gradient)
JAX_KINDS = frozenset({"gradfn", "jitfn", "grads", "key", "opaque_grad", "linen_apply"})
CALLABLE_KINDS = frozenset({"function", "method", "gradfn", "jitfn", "partial", "opaque_grad", "linen_apply", "class",
                            "builtin", "external"})
ARRAY_KINDS = frozenset({"tensor", "number", "array"})
ARRAY_INDEXES = (ast.Compare, ast.Tuple)  # a mask or several axes: indexes of an array, never of a dict or a list


def const_argnums(node: ast.AST | None):
    if node is None:
        return (0,)
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return (node.value,)
    if isinstance(node, (ast.Tuple, ast.List)) and all(
            isinstance(e, ast.Constant) and isinstance(e.value, int) for e in node.elts):
        return tuple(e.value for e in node.elts)
    return None


def static_of(node: ast.Call) -> frozenset:
    """Positions and names a transform keeps static (`ANY_STATIC` when they are not literals)."""
    out: set = set()
    in_axes = call_argument(node, "in_axes")
    if isinstance(in_axes, (ast.Tuple, ast.List)):  # vmap: unbatched arguments are not traced
        out |= {i for i, e in enumerate(in_axes.elts)
                if not isinstance(e, ast.Constant) or e.value is None}  # a variable axis may be None too
    elif in_axes is not None and not isinstance(in_axes, ast.Constant):
        out.add(ANY_STATIC)
    for name in ("static_argnums", "static_argnames"):
        v = call_argument(node, name)
        if v is None or (isinstance(v, ast.Constant) and v.value is None):
            continue
        elts = v.elts if isinstance(v, (ast.Tuple, ast.List)) else [v]
        if not all(isinstance(e, ast.Constant) for e in elts):
            out.add(ANY_STATIC)
        out |= {e.value for e in elts if isinstance(e, ast.Constant)}
    return frozenset(out)


def is_static(static: frozenset, key) -> bool:
    return key in static or ANY_STATIC in static


def untrace(value: Value, depth: int = 0) -> Value:
    """A transformed function's output seen by an untraced caller: concrete arrays."""
    items = value.items
    if items and depth < 6:
        items = tuple(untrace(v, depth + 1) for v in items)
    return replace(value, traced=False, jtraced=False, items=items, refinable=False,
                   extra=tuple(e for e in value.extra if e != TRACED_ARG))


def without_sources(value: Value, depth: int = 0, cuts: bool = False) -> Value:
    """An argument a transform does not differentiate: it carries no gradient inside (`cuts`: nor the cuts
    that came before, as for a differentiated function's auxiliary output)."""
    items = value.items
    if items and depth < 6:
        items = tuple(without_sources(v, depth + 1, cuts) for v in items)
    return replace(value, srcs=EMPTY, items=items, cuts=() if cuts else value.cuts)


def required(fn: ast.AST, bound: int) -> int:
    """How many positional parameters after `bound` have no default (the rest keep their defaults)."""
    a = fn.args
    positional = len(a.posonlyargs) + len(a.args)
    return max(0, positional - len(a.defaults) - bound)


def zero_cotangents(bwd, frame: Frame) -> dict:
    """{input position: the expression} of the inputs a custom VJP rule (`bwd(res, g)`) returns a zero for (or None)
    on every `return` of its body."""
    found: dict | None = None
    names = bwd.module.names
    for node in ast.walk(bwd.node):
        if not isinstance(node, ast.Return) or isinstance(node.value, ast.Tuple) is False:
            if isinstance(node, ast.Return):
                return {}
            continue
        zero = {}
        for i, element in enumerate(node.value.elts):
            if isinstance(element, ast.Constant) and element.value in (None, 0, 0.0) or isinstance(
                    element, ast.Call) and (names.qualname(element.func) or "") in api.ZERO_COTANGENTS:
                zero[i] = element
        found = zero if found is None else {i: e for i, e in found.items() if i in zero}
    return found or {}


class JaxPlugin(FrameworkPlugin):
    name = "jax"
    roots = api.ROOTS
    kinds = JAX_KINDS

    def __init__(self, interp):
        super().__init__(interp)
        self.grad_transforms: dict = {}  # id(node) -> GradTransform
        self.trace_transforms: dict = {}  # id(node) -> TraceTransform
        self.gradients: dict = {}  # (id(transform), id(call), index) -> Gradients
        self.called: set = set()  # (id(function node), argnums) differentiated at a call site
        self.decorator_calls: dict = {}  # id(decorator) -> the call it stands for
        self.pending: tuple | None = None  # the transform the next function entered runs under
        # id(def of a custom_vjp function) -> {input position: where its backward rule returns a zero for it}
        self.zero_cotangents: dict = {}
        self.recording: dict | None = None  # id(node) -> value, while a `where`'s arguments are evaluated
        self.linen: list = []  # the flax linen `apply` calls being run, innermost last (`linen.Scope`)

    def claims(self, value: Value) -> bool:
        return super().claims(value) or (value.fw is None and value.traced)

    # ================================================================== transforms in effect
    def transforms(self, frame: Frame) -> tuple:
        return frame.state.get(TRANSFORMS) or ()

    def transform_name(self, frame: Frame) -> str:
        stack = self.transforms(frame)
        return stack[-1].label if stack else "a JAX transformation"

    def context_key(self, frame: Frame, func: FunctionRef, node) -> tuple:
        stack = self.transforms(frame)
        if self.pending is not None:
            stack = stack + (self.pending,)
        key = tuple(id(t) for t in stack)
        return key + (("linen", id(self.linen[-1])),) if self.linen else key

    def enter_function(self, func: FunctionRef, frame: Frame, caller: Frame | None, node) -> None:
        stack = self.transforms(caller) if caller is not None else self.transforms(frame)
        if self.pending is not None:
            stack = stack + (self.pending,)
            self.pending = None
        if stack:
            frame.state[TRANSFORMS] = stack

    def call_under(self, transform, ref: FunctionRef, args: list, kwargs: dict, frame: Frame, node) -> Value:
        """Call `ref` with the transform in effect inside it (and in everything it calls)."""
        self.pending = transform
        try:
            return self.interp.call_function(ref, args, kwargs, frame, node)
        finally:
            self.pending = None

    # ================================================================== decorators and transforms
    def decorate(self, qn, decorator, func: Value, frame: Frame):
        if qn in api.CUSTOM_DERIVATIVE:
            return Value("opaque_grad", ref=func)  # its own derivative: differentiable, never a cut
        if qn in api.PARTIAL and isinstance(decorator, ast.Call) and decorator.args:
            inner = frame.module.names.qualname(decorator.args[0]) or ""
            if inner in api.GRAD_TRANSFORMS or inner in api.TRACING_TRANSFORMS:
                call = self.decorator_call(decorator, decorator.args[0], decorator.keywords)
                return self.transform(call, inner, [func], {})
            return None
        if qn in api.GRAD_TRANSFORMS or qn in api.TRACING_TRANSFORMS:
            call = decorator if isinstance(decorator, ast.Call) else self.decorator_call(decorator, decorator, [])
            return self.transform(call, qn, [func], {})
        return None

    def decorator_call(self, decorator: ast.AST, func: ast.AST, keywords: list) -> ast.Call:
        """The call a decorator stands for (`@jax.jit` is `jax.jit(f)`), one per decorator."""
        call = self.decorator_calls.get(id(decorator))
        if call is None:
            call = ast.Call(func=func, args=[], keywords=keywords)
            ast.copy_location(call, decorator)
            call.end_lineno, call.end_col_offset = decorator.end_lineno, decorator.end_col_offset
            self.decorator_calls[id(decorator)] = call
        return call

    def transform(self, node: ast.Call, qn: str, args: list, kwargs: dict) -> Value | None:
        if qn in api.GRAD_TRANSFORMS and (args or call_argument(node, "fun") is not None):
            fn = args[0] if args else kwargs.get("fun", UNKNOWN)
            argnums_node = call_argument(node, "argnums", 1)
            mode = api.GRAD_TRANSFORMS[qn]
            if fn.kind == "gradfn" and isinstance(fn.ref, GradTransform):  # grad of grad
                inner = fn.ref
                return Value("gradfn", ref=GradTransform(inner.fn, const_argnums(argnums_node), mode, node, inner.jit,
                                                         False, argnums_node))
            # grad of a jitted function: the jit still traces it abstractly, with its own static arguments
            jitted = fn.kind == "jitfn" and isinstance(fn.ref, TraceTransform) and fn.ref.mode == "jit"
            gf = self.grad_transforms.get(id(node))
            if gf is None:
                has_aux = call_argument(node, "has_aux")
                allow_int = call_argument(node, "allow_int")
                gf = GradTransform(fn, const_argnums(argnums_node), mode, node, jit=jitted,
                                   has_aux=isinstance(has_aux, ast.Constant) and bool(has_aux.value),
                                   argnums_node=argnums_node, static=fn.ref.static if jitted else EMPTY,
                                   allow_int=isinstance(allow_int, ast.Constant) and bool(allow_int.value),
                                   filtered=qn in api.FILTERED_TRANSFORMS)
                self.grad_transforms[id(node)] = gf
            return Value("gradfn", ref=gf)
        if qn in api.TRACING_TRANSFORMS and args:
            fn = args[0]
            mode = api.TRACING_TRANSFORMS[qn]
            if fn.kind == "gradfn" and isinstance(fn.ref, GradTransform):
                g = fn.ref
                gf = self.grad_transforms.get(id(node))
                if gf is None:
                    gf = replace(g, jit=True, static=static_of(node), filtered=g.filtered or qn in api.FILTERED_TRANSFORMS)
                    self.grad_transforms[id(node)] = gf
                return Value("gradfn", ref=gf)
            tf = self.trace_transforms.get(id(node))
            if tf is None:
                tf = TraceTransform(fn, mode, node, static_of(node), qn in api.FILTERED_TRANSFORMS)
                self.trace_transforms[id(node)] = tf
            return Value("jitfn", ref=tf)
        return None

    def underlying(self, fn: Value) -> FunctionRef | None:
        """The function a (partial, jitted) function value runs, with every argument bound to it."""
        bound: list = []
        for _ in range(8):
            if fn.kind == "partial" and fn.ref:
                inner, args, _kw = fn.ref
                bound = list(args) + bound
                fn = inner
            elif fn.kind == "jitfn" and isinstance(fn.ref, TraceTransform):
                fn = fn.ref.fn
            else:
                break
        if fn.kind in ("function", "method") and fn.func is not None:
            ref = fn.func
            return replace(ref, bound=ref.bound + tuple(bound)) if bound else ref
        return None

    def on_bind(self, name: str, value: Value, frame: Frame, stmt) -> Value:
        if value.kind == "grads" and frame.loops and stmt is not None and "." not in name:
            self.interp.emit(GradientsBound(stmt, frame.module, name), frame)
        return value

    def emit(self, event, frame: Frame):
        event = super().emit(event, frame)
        if isinstance(event, EXPECTED_ERRORS) and self.error_expected(event.node, frame):
            return None  # a test that provokes the error on purpose
        return event

    def error_expected(self, node: ast.AST, frame: Frame) -> bool:
        """Is the error raised at `node` expected: there, or at one of the calls that led there?"""
        local = self.local_nodes
        scopes = self.scopes(self.interp.root)
        return any(n is not None and local(n) and scopes.expects_error(n)
                   for n in (node, *self.interp.call_sites))

    @cached_property
    def local_nodes(self):
        return in_file(self.interp.root.source)

    def merge(self, values: list) -> Value | None:
        if all(v.kind == "gradfn" and isinstance(v.ref, GradTransform) for v in values):
            first = values[0].ref
            if all(v.ref.fn == first.fn and v.ref.argnums == first.argnums for v in values):
                # `if use_jit: g = jax.jit(g)`: the jitted one is the stricter
                return next((v for v in values if v.ref.jit), values[0])
            return None
        if any(v.kind in ("dict", "container") for v in values) and all(
                v.kind in ("dict", "container", "unknown", "none") for v in values):
            # `params = restored if ... else {}`: a pytree on every path (truth-tested only on the Python side)
            merged = join(*values)
            return replace(merged, extra=merged.extra + ((PYTREE,) if PYTREE not in merged.extra else ()))
        if all((v.kind == "tensor" and v.fw == "jax") or TRACED_ARG in v.extra for v in values):
            made_at = values[0].made_at if all(v.made_at is values[0].made_at for v in values) else None
            # `x = x + 1` in one branch: an array either way
            return replace(join(*values), kind="tensor", fw="jax", made_at=made_at)
        return None

    # ================================================================== calls of transformed functions
    def call_object(self, callee: Value, node, frame: Frame, args, kwargs):
        if callee.kind == "gradfn" and isinstance(callee.ref, GradTransform):
            return self.call_gradfn(node, callee.ref, args, kwargs, frame)
        if callee.kind == "jitfn" and isinstance(callee.ref, TraceTransform):
            return self.call_jitfn(node, callee.ref, args, kwargs, frame)
        if callee.kind == "linen_apply" and isinstance(callee.ref, Value):  # `state.apply_fn({"params": p}, x)`
            return linen.apply(self, callee.ref, node, frame, args, kwargs)
        if callee.kind == "module" and isinstance(callee.ref, tuple) and callee.ref[:1] == ("linen",):
            return linen.call_layer(self, callee, node, args, kwargs, frame)
        if callee.kind == "object" and self.linen and linen.is_linen_class(callee.cls):
            out = linen.call_submodule(self, callee, node, frame, args, kwargs)
            if out is not None:
                return out
        if callee.kind == "opaque_grad":
            zeros = self.zero_cotangents.get(id(callee.ref.func.node)) if callee.ref.func is not None else None
            if zeros:  # its backward rule gives these inputs a zero cotangent: nothing flows back through them
                args = [self.cut(zeros[i], ast.unparse(zeros[i]), "zero_grad", [a], frame) if i in zeros and (
                    a.srcs or a.cuts) else a for i, a in enumerate(args)]
            return custom_derivative_call(args, kwargs)
        return None

    def call_gradfn(self, node, gf: GradTransform, args: list, kwargs: dict, frame: Frame,
                    standalone: bool = False) -> Value:
        ref = self.underlying(gf.fn)
        call_args = getattr(node, "args", [])
        first_star = next((i for i, a in enumerate(call_args) if isinstance(a, ast.Starred)), None)
        argnums = gf.argnums if gf.argnums is not None else (0,)
        names = ref.params() if ref is not None else []
        bound = len(ref.bound) if ref is not None else 0
        values = []
        for i, arg in enumerate(args):
            pos = i + bound
            pname = names[pos] if pos < len(names) else f"arg{i}"
            differentiated = i in argnums and not (first_star is not None and i >= first_star)
            if differentiated and not standalone:
                self.check_int(arg, gf, node, pname, call_args[i] if i < len(call_args) else node, frame)
                self.check_array(arg, gf, node, call_args[i] if i < len(call_args) and first_star is None else None,
                                 frame)
            if differentiated:
                values.append(Value("tensor" if arg.kind in ARRAY_KINDS else "unknown", srcs=frozenset({pname}),
                                    dtype="float", fw="jax", traced=True, jtraced=gf.jit or arg.jtraced,
                                    refinable=True, deps=arg.deps))
            else:
                static = is_static(gf.static, i) or is_static(gf.static, pname) or not holds_arrays(arg, gf.filtered)
                values.append(self.trace(arg, gf.jit and not static))
        if ref is None:
            self.interp.emit(Differentiated(node, frame.module, gf, None), frame)
            return Value("grads", ref=self.gradients_of(gf, node), fw="jax")
        if not standalone:
            self.called.add((id(ref.node), gf.argnums))
        traced_kwargs = {k: self.trace(v, gf.jit and not is_static(gf.static, k) and holds_arrays(v, gf.filtered))
                         for k, v in kwargs.items()}
        result = self.call_under(gf, ref, list(ref.bound) + values, traced_kwargs, frame, node)
        self.record_lost(result, gf, frame)
        if not standalone:
            for i, arg in enumerate(args):
                if i in argnums and not (first_star is not None and i >= first_star) and i + bound < len(names):
                    self.record_unread(arg, names[i + bound], result, gf, ref, node, frame)
        self.interp.emit(Differentiated(node, frame.module, gf, result), frame)
        traced = any(flat(a).traced for a in args)  # outputs are concrete unless the caller is traced
        jtraced = any(flat(a).jtraced for a in args)
        grads = Value("grads", ref=self.gradients_of(gf, node), traced=traced, jtraced=jtraced, fw="jax")
        # the auxiliary output keeps the structure the function returned (a dict of metrics stays a dict)
        aux = without_sources(result.item(1) or UNKNOWN, cuts=True) if gf.has_aux else None
        if gf.mode == "value_and_grad":
            value = Value("tensor", dtype="float", fw="jax", traced=traced, jtraced=jtraced)
            if aux is not None:
                value = Value("container", items=(value, aux), traced=traced, jtraced=jtraced)
            return Value("container", items=(value, grads))
        if aux is not None and gf.mode == "grad":  # (grads, aux)
            return Value("container", items=(grads, aux))
        return grads

    def record_lost(self, result: Value, gf: GradTransform, frame: Frame) -> None:
        """Cuts on the differentiated output that leave a differentiated argument without any other path."""
        target = flat(result.item(0) or UNKNOWN) if gf.has_aux and result.items else flat(result)
        for c in last_cuts(target.cuts):
            lost = frozenset(s for s in c.lost if not covered(s, target.srcs))
            if lost:
                self.interp.emit(LostCut(c.node, c.module or frame.module, c, lost, gf), frame)

    def record_unread(self, arg: Value, pname: str, result: Value, gf: GradTransform, ref: FunctionRef, call,
                      frame: Frame) -> None:
        """Array leaves of a differentiated dict the output never reads while it reads others of the same argument
        (`params['temperature']` beside a loss of `params['W']`): they get an all-zero gradient."""
        if arg.keys is None or ref.node is None:
            return
        target = flat(result.item(0) or UNKNOWN) if gf.has_aux and result.items else flat(result)
        reached = set(target.srcs).union(*(c.lost for c in target.cuts))
        if pname in reached or not any(s.startswith(pname + ".") for s in reached):
            return  # read whole, or not at all (GT311 then reports the argument itself)
        for path, leaf_name, leaf in leaves(arg, pname):
            if leaf_name is not None and leaf_name != pname and leaf.kind in ARRAY_KINDS and leaf.dtype != "int" and not covered(leaf_name, frozenset(reached)):
                key = leaf_name.rsplit(".", 1)[-1]
                self.interp.emit(UnreadLeaf(leaf.made_at or call, frame.module, path, key, ref.node, gf, call), frame)

    def gradients_of(self, gf: GradTransform, node, index: int | None = None) -> Gradients:
        key = (id(gf), id(node), index)
        found = self.gradients.get(key)
        if found is None:
            found = self.gradients[key] = Gradients(gf, node, index)
        return found

    def call_jitfn(self, node, tf: TraceTransform, args: list, kwargs: dict, frame: Frame) -> Value:
        ref = self.underlying(tf.fn)
        if ref is None:  # a callable object (an equinox module): what it holds reaches its output
            return combine("unknown", tf.fn, *args, *kwargs.values())
        names = ref.params()
        bound = len(ref.bound)
        values = []
        for i, a in enumerate(args):
            pos = i + bound
            static = is_static(tf.static, i) or (pos < len(names) and is_static(tf.static, names[pos]))
            values.append(self.trace(a, not static and holds_arrays(a, tf.filtered), keep=True))
        traced_kwargs = {k: self.trace(v, not is_static(tf.static, k) and holds_arrays(v, tf.filtered), keep=True)
                         for k, v in kwargs.items()}
        out = self.call_under(tf, ref, list(ref.bound) + values, traced_kwargs, frame, node)
        outer = any(flat(a).jtraced for a in args)
        return out if outer else untrace(out)

    def trace(self, value: Value, jit: bool, depth: int = 0, keep: bool = False) -> Value:
        """An argument as a transform's body sees it: abstract under jit; no gradient of its own unless `keep`
        (jit/vmap are transparent to a gradient taken around them)."""
        if not jit:
            return value if keep else without_sources(value)
        if value.kind in CALLABLE_KINDS or value.kind in ("str", "none", "object", "module", "jitfn"):
            return value
        items = value.items
        if items and depth < 6:
            items = tuple(self.trace(v, True, depth + 1, keep) for v in items)
        leaf = value.kind == "unknown" and value.items is None and value.ref is None and PYTREE not in value.extra
        extra = value.extra + ((TRACED_ARG,) if leaf and TRACED_ARG not in value.extra else ())
        return replace(value, srcs=value.srcs if keep else EMPTY, traced=True, jtraced=True, items=items,
                       extra=extra, fw="jax" if leaf else value.fw)

    def check_int(self, arg: Value, gf: GradTransform, call, pname: str, arg_node, frame: Frame) -> None:
        if gf.allow_int or gf.mode not in api.INTEGER_REJECTING:  # `jax.vjp` takes integer primals (float0)
            return
        for path, _, leaf in leaves(arg, pname):
            if leaf.dtype == "int" and leaf.kind in ARRAY_KINDS and not (gf.filtered and leaf.kind == "number"):
                self.interp.emit(IntegerInput(leaf.made_at or arg_node, frame.module, path, gf, call), frame)

    def check_array(self, arg: Value, gf: GradTransform, call, arg_node, frame: Frame) -> None:
        """A differentiated argument JAX cannot take (`jax.grad(loss)(model, params, x)` with the default argnums=0
        on a flax linen module): the call raises TypeError, "... is not a valid JAX type"."""
        if arg_node is None or gf.filtered:
            return
        if arg.kind == "object" and linen.is_linen_class(arg.cls):
            what = f"a flax linen `{arg.cls.name}`"
        elif arg.kind == "function" and arg.func is not None:
            what = "a function"
        else:
            return
        text = ast.unparse(arg_node)
        self.interp.emit(NotArrayInput(arg_node, frame.module, f"`{text}`, {what}", gf, call), frame)

    # ================================================================== external calls
    def external_call(self, qn: str, node: ast.Call, frame: Frame):
        root = qn.split(".", 1)[0]
        host = qn.startswith(api.HOST_ROOTS)
        if root not in api.ROOTS and not host:
            return None
        interp = self.interp
        if qn in api.GRAD_TRANSFORMS or qn in api.TRACING_TRANSFORMS:
            args, kwargs = interp.eval_args(node, frame)
            return self.transform(node, qn, args, kwargs) or combine("unknown", *args)
        if qn in linen.TRAIN_STATES:
            args, kwargs = interp.eval_args(node, frame)
            return linen.train_state(kwargs)
        if qn.startswith(linen.LINEN) and qn.rsplit(".", 1)[-1][:1].isupper() and "." not in qn[len(linen.LINEN):]:
            _, kwargs = interp.eval_args(node, frame)  # `nn.Dense(8)`: a layer, named by where it is made or stored
            return linen.new_layer(self.linen[-1] if self.linen else None, qn, node, frame, kwargs)
        if qn == api.VJP:
            args, kwargs = interp.eval_args(node, frame)
            if not args:
                return UNKNOWN
            gf = self.grad_transforms.get(id(node))
            if gf is None:
                gf = self.grad_transforms[id(node)] = GradTransform(args[0], tuple(range(len(args) - 1)), "vjp", node)
            self.call_gradfn(node, gf, args[1:], {}, frame)
            return Value("container", items=(Value("tensor", fw="jax"), Value("function")))
        if qn in api.STOP_GRADIENT:
            args, _ = interp.eval_args(node, frame)
            if args and (args[0].items is not None or args[0].refinable):
                # a pytree (`lax.stop_gradient(params)`): every leaf cut, its parts still named
                return self.stop_tree(node, args[0], frame, op="lax.stop_gradient")
            return self.cut(node, "lax.stop_gradient", "stop_gradient", args[:1], frame)
        if host:
            return self.host_call(qn, node, frame)
        args, kwargs = self.where_args(node, frame) if qn == "jax.numpy.where" else interp.eval_args(node, frame)
        if qn in api.HOST_CALLBACKS:
            operands = list(args[2:]) + [v for k, v in kwargs.items() if k not in ("vmap_method", "vectorized")]
            if any(v.srcs for v in operands) and any(isinstance(t, GradTransform) for t in self.transforms(frame)):
                self.interp.emit(Conversion(node, frame.module, qn, "error",
                                            self.transform_name(frame)), frame)
            return self.cut(node, qn, "python", operands, frame)
        if qn in api.DYNAMIC_LOOPS:
            self.check_loop(node, qn, args, frame)
            ran = self.run_bodies(node, qn.rsplit(".", 1)[-1], args, frame)
            return ran if ran is not None else combine("tensor", *(a for a in args if a.kind not in CALLABLE_KINDS),
                                                       fw="jax")
        if qn in api.TREE_MAP and len(node.args) == 2 and not node.keywords and self.is_stop_fn(node.args[0], frame):
            return self.stop_tree(node, args[1], frame)
        if qn in api.TREE_MAP or qn in api.APPLY_UPDATES:
            self.check_update(node, qn, args, frame)
        if qn in api.TREE_MAP and len(args) >= 2 and not node.keywords:
            mapped = self.map_leaves(node, args, frame)
            if mapped is not None:
                return mapped
        if qn in api.HOST_RESULT:
            out = combine("array", *args)
            return replace(out, traced=False, jtraced=False)
        if qn.startswith(api.ARRAY_MODULES):
            return self.array_call(node, qn, args, kwargs, frame)
        return replace(combine("unknown", *args, *kwargs.values()), opaque=True)

    def run_bodies(self, node: ast.Call, op: str, args: list, frame: Frame) -> Value | None:
        """What `lax.scan`, `cond`, `switch`, `map`, `fori_loop` and `while_loop` return, from running their body
        functions (the file's own) on what they are given, traced: a cut inside an RNN cell reaches the output.
        None when a body is not a function of the project (the result is then taken as a whole, as before)."""
        def body(position: int, values: list) -> Value | None:
            fn = args[position] if position < len(args) else None
            if fn is None or fn.kind not in ("function", "method") or fn.func is None or position >= len(node.args):
                return None
            call = ast.copy_location(ast.Call(func=node.args[position], args=[], keywords=[]), node)
            return self.interp.call_value(fn, call, frame, [self.trace(v, True, keep=True) for v in values], {})

        def element(value: Value) -> Value:
            return flat(value) if value.items else value

        if op == "scan" and len(args) >= 2:
            xs = element(args[2]) if len(args) > 2 else NONE
            out = body(0, [args[1], xs])
            if out is None or out.items is None or len(out.items) != 2:
                return None
            carry = self.interp.merge_values([args[1], out.items[0]])
            return Value("container", items=(carry, out.items[1]), srcs=carry.srcs | out.items[1].srcs,
                         cuts=out.cuts, deps=out.deps)
        if op == "cond" and len(args) >= 3:
            branches = [body(1, args[3:]), body(2, args[3:])]
            return self.interp.merge_values(branches) if all(b is not None for b in branches) else None
        if op == "map" and len(args) >= 2:
            return body(0, [element(args[1])])
        if op == "fori_loop" and len(args) >= 4:
            out = body(2, [args[0], args[3]])
            return self.interp.merge_values([args[3], out]) if out is not None else None
        if op == "while_loop" and len(args) >= 3:
            out = body(1, [args[2]])
            return self.interp.merge_values([args[2], out]) if out is not None else None
        return None

    def map_leaves(self, node: ast.Call, args: list, frame: Frame) -> Value | None:
        """`tree_map(lambda p: (p * s).astype(jnp.int8) / s, params)`: the file's own function applied to a leaf of
        each tree; what it cuts (an integer cast of every leaf) is cut in the mapped tree. None when it cuts
        nothing new (the tree is then taken as a whole, as before)."""
        fn = args[0]
        if fn.kind not in ("function", "method") or fn.func is None or len(args) > 4:
            return None
        leaves = [flat(tree) if tree.items else tree for tree in args[1:]]
        call = ast.copy_location(ast.Call(func=node.args[0], args=node.args[1:], keywords=[]), node)
        result = self.interp.call_value(fn, call, frame, leaves, {})
        known = {id(c) for leaf in leaves for c in leaf.cuts}
        if not any(id(c) not in known for c in result.cuts):
            return None
        return replace(flat(result) if result.items else result, opaque=False)

    def host_call(self, qn: str, node: ast.Call, frame: Frame):
        """NumPy, `math` and SciPy: a traced argument must become concrete; otherwise host arrays."""
        args, kwargs = self.interp.eval_args(node, frame)
        traced = [a for a in args if a.traced] if self.transforms(frame) else []
        if qn in api.HOST_METADATA:  # `np.shape(x)` reads the shape: static even under a trace
            return Value("meta")
        if traced:
            op = "np." + qn.split(".", 1)[1] if qn.startswith("numpy.") else qn
            return self.convert(node, op, join(*traced), frame)
        if not self.exclusive and not any(self.claims(a) for a in list(args) + list(kwargs.values())):
            return None
        out = self.array_call(node, qn, args, kwargs, frame)
        return replace(out, kind="array", fw=None)

    def where_args(self, node: ast.Call, frame: Frame):
        """Evaluate a `where`'s arguments, remembering what each sub-expression was (for `check_where`)."""
        outer = self.recording
        if outer is None:
            self.recording = {}
        try:
            args, kwargs = self.interp.eval_args(node, frame)
            if len(node.args) == 3:
                self.check_where(node, self.recording, frame)
        finally:
            self.recording = outer
        return args, kwargs

    def array_call(self, node: ast.Call, qn: str, args: list, kwargs: dict, frame: Frame) -> Value:
        tail = qn.rsplit(".", 1)[-1]
        jnp = qn.startswith("jax.numpy.")
        if jnp and tail == "where" and len(node.args) == 3:
            out = combine("tensor", *args, fw="jax")
            return replace(out, dtype=None, extra=(GUARDED,))
        if jnp and tail in api.GUARDS:
            return replace(combine("tensor", *args, fw="jax"), extra=(GUARDED,))
        if qn.startswith("jax.lax.") and tail in api.COLLECTIVES and args and args[0].kind != "tensor":
            return args[0]  # `lax.pmean(metrics_dict)` is still the dict
        if qn.startswith("jax.lax.") and tail in api.PYTREE_LAX:
            ran = self.run_bodies(node, tail, args, frame)
            if ran is not None:
                return ran
            # whatever the branch/body functions return: any pytree
            return combine("unknown", *(a for a in args if a.kind not in CALLABLE_KINDS))
        if tail in api.INDEX_OPS:
            return self.cut(node, f"jnp.{tail}", "int_cast", args[:1], frame, dtype="int")
        if qn in api.VALUES_AND_INDICES and args:  # `values, indices = lax.top_k(scores, k)`
            values = replace(combine("tensor", args[0], fw="jax"), made_at=node)
            indices = self.cut(node, f"lax.{tail} indices", "int_cast", args[:1], frame, dtype="int")
            return Value("container", items=(values, indices), srcs=values.srcs, cuts=indices.cuts, deps=values.deps,
                         traced=values.traced, jtraced=values.jtraced)
        if qn in api.DISCRETE_SAMPLERS:  # the distribution's parameters follow the key
            return self.cut(node, f"jax.random.{tail}", "int_cast", args[1:] + list(kwargs.values()), frame,
                            dtype=api.DISCRETE_SAMPLERS[qn])
        if tail in api.ZERO_GRAD_OPS:
            return self.cut(node, f"jnp.{tail}", "zero_grad", args[:1], frame)
        if qn in api.KEY_FACTORIES:
            return Value("key", fw="jax")
        names = frame.module.names
        position = api.DTYPE_POSITION.get(tail) if jnp else None
        dtype_node = call_argument(node, "dtype", position)
        dtype = dtype_of(dtype_node, names)
        if dtype is None and dtype_node is not None and not (isinstance(dtype_node, ast.Constant)
                                                             and dtype_node.value is None):
            return replace(combine("tensor", *args, *kwargs.values(), fw="jax"), made_at=node)  # `dtype=x.dtype`
        if dtype is None and tail[:5] in ("float", "int8", "int16", "int32", "int64", "uint8", "bfloa", "compl"):
            dtype = dtype_of(ast.Constant(tail), names)
        if dtype is None:
            if tail in ("array", "asarray") and node.args:
                dtype = literal_dtype(node.args[0]) or (args[0].dtype if args else None)
            elif tail == "arange":
                dtype = "int" if args and all(a.dtype == "int" for a in args) else None
            elif tail == "randint":
                dtype = "int"
            elif tail in api.FLOAT_FACTORIES or qn.startswith("jax.random."):
                if tail in ("zeros_like", "ones_like", "full") and args:
                    dtype = args[-1 if tail == "full" else 0].dtype
                else:
                    dtype = "float"
        everything = list(args) + list(kwargs.values())
        out = combine("tensor", *everything, fw="jax")
        arrays = [v for v in everything if v.kind != "number"]  # a Python number there is a shape, an axis, a seed
        if dtype is None and arrays and joined_dtype(*arrays) != "bool":
            dtype = joined_dtype(*arrays)
        out = replace(out, dtype=dtype, made_at=node, extra=())
        if tail in api.SEQUENCE_RESULTS:
            return Value("container", items=(out,), srcs=out.srcs, cuts=out.cuts, deps=out.deps, traced=out.traced,
                         jtraced=out.jtraced)
        return out

    def cut(self, node: ast.AST, op: str, kind: str, inputs: list, frame: Frame, dtype: str | None = None,
            result_kind: str = "tensor") -> Value:
        """The result of an operation without a derivative: what its inputs carried is cut here."""
        source = combine(result_kind, *inputs) if inputs else Value(result_kind)
        out = cut(source, node, kind, op, zero=kind == "zero_grad", result_kind=result_kind, module=frame.module,
                  dtype=dtype or source.dtype, fw="jax" if result_kind == "tensor" else None)
        return replace(out, made_at=node)

    def convert(self, node: ast.AST, op: str, value: Value, frame: Frame, silent: bool = False) -> Value:
        """A traced value made concrete: raises under an abstract trace, silently a constant under grad."""
        if not (silent and not value.jtraced) or value.srcs:
            severity = "warning" if silent and not value.jtraced else "error"
            self.interp.emit(Conversion(node, frame.module, op, severity, self.transform_name(frame)), frame)
        # concrete from here on: the conversion raised (reported once, here), or gave a constant
        return replace(self.cut(node, op, "python", [value], frame, result_kind="number"), traced=False, jtraced=False)

    # ================================================================== Python on JAX values
    def builtin(self, name: str, node: ast.Call, frame: Frame, args, kwargs):
        if not self.transforms(frame):
            return None  # outside every transform nothing is a tracer
        if name in ("float", "int", "bool", "complex") and args and args[0].traced:
            return self.convert(node, f"{name}()", args[0], frame)
        if name == "range" and any(a.jtraced for a in args):
            self.convert(node, "range()", join(*(a for a in args if a.jtraced)), frame)
            return Value("range")
        return None

    def method(self, receiver: Value, method: str, node: ast.Call, frame: Frame, args, kwargs):
        if receiver.kind == "opaque_grad":
            if method == "defvjp" and len(args) >= 2 and args[1].func is not None and receiver.ref.func is not None:
                self.zero_cotangents[id(receiver.ref.func.node)] = zero_cotangents(args[1].func, frame)
            return NONE  # `f.defvjp(fwd, bwd)`
        held = linen.train_state_part(receiver, method) if method == "apply_fn" else None
        if held is not None and held.kind == "linen_apply":  # `state.apply_fn({"params": p}, x)`
            return self.call_object(held, node, frame, args, kwargs)
        if receiver.kind == "class" and method == "create" and linen.is_train_state_class(receiver.cls):
            return linen.train_state(kwargs)  # `class State(TrainState): batch_stats: Any` then `State.create(...)`
        if receiver.kind == "object" and method in ("apply", "param") and linen.is_linen_class(receiver.cls):
            if method == "apply":
                out = linen.apply(self, receiver, node, frame, args, kwargs)
                if out is not None:
                    return out
            elif self.linen:
                return linen.own_parameter(self, node)
        if receiver.kind in ("gradfn", "jitfn"):
            return Value("unknown", opaque=True)  # `.lower(...)`, `.trace(...)`
        given = args[0] if args else kwargs.get("updates")  # `optimizer.update(grads, state)`, `update(updates=grads, ...)`
        if method == "update" and given is not None and given.kind == "grads":
            return Value("container", items=(given, UNKNOWN))
        if not self.claims(receiver) or receiver.kind in ("container", "dict", "str", "object", "module", "class"):
            return None
        if method in api.HOST_METHODS and receiver.traced and self.transforms(frame):
            return self.convert(node, f".{method}()", receiver, frame, silent=method == "item")
        host = "array" if receiver.kind == "array" else "tensor"  # a NumPy array's method returns NumPy
        if method in api.INDEX_OPS:
            return self.cut(node, f".{method}()", "int_cast", [receiver], frame, dtype="int", result_kind=host)
        if method in api.ZERO_GRAD_OPS and receiver.kind == "tensor":
            return self.cut(node, f".{method}()", "zero_grad", [receiver], frame)
        if method == "astype" and node.args:
            dtype = dtype_of(node.args[0], frame.module.names)
            if dtype == "int":
                return self.cut(node, ".astype(int)", "int_cast", [receiver], frame, dtype="int", result_kind=host)
            return replace(flat(receiver), dtype=dtype, made_at=node, extra=())
        if receiver.kind == "tensor" or TRACED_ARG in receiver.extra:
            if method in api.HOST_METHODS or method in ("numpy", "__array__"):
                return combine("unknown", receiver, *args)
            kind = "tensor"
        else:
            kind = "unknown"
        everything = [receiver, *args, *kwargs.values()]
        return combine(kind, *everything, dtype=joined_dtype(*everything), fw="jax" if kind == "tensor" else None)

    def attribute(self, base: Value, attr: str, node: ast.AST, frame: Frame):
        if base.kind in ("gradfn", "jitfn", "opaque_grad"):
            return Value("unknown", opaque=True)
        if base.kind == "object" and attr == "apply" and linen.is_linen_class(base.cls):
            return Value("linen_apply", ref=base, fw="jax")  # `apply_fn=model.apply`
        held = linen.train_state_part(base, attr)
        if held is not None:
            return held
        if not self.claims(base) or base.kind in ("object", "class", "module", "container", "dict", "function",
                                                  "method", "str"):
            return None
        if attr == "at" and base.kind == "tensor":
            return base  # `x.at[i].set(v)`: a new array from `x`
        if attr in api.STATIC_ATTRS:
            return Value("meta", cuts=base.cuts, deps=base.deps)
        if attr in api.ARRAY_VIEWS and base.kind in ("tensor", "array"):
            return replace(base, items=None, keys=None, leaf=False, name=None)
        return Value("unknown", srcs=base.srcs, cuts=base.cuts, deps=base.deps, traced=base.traced,
                     jtraced=base.jtraced, extra=(FIELD,))

    def arith_kind(self, a: Value, b: Value) -> str:
        kinds = (a.kind, b.kind)
        if "tensor" in kinds and (a.fw == "jax" or b.fw == "jax" or self.exclusive):
            return "tensor"
        if FIELD in a.extra or FIELD in b.extra:
            return FIELD
        if a.traced or b.traced:
            return "tensor"
        if "tensor" in kinds:
            return "tensor"
        if "array" in kinds:
            return "array"
        return "unknown"

    def binop(self, node, op, left: Value, right: Value, frame: Frame):
        for g, other, other_node in ((right, left, getattr(node, "left", None)),
                                     (left, right, getattr(node, "right", None))):
            if g.kind != "grads":
                continue
            if isinstance(op, ast.Sub) and g is right:
                if isinstance(node, ast.BinOp) and isinstance(other_node, ast.Name):
                    self.record_update(other_node.id, g.ref, node, frame)
                elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
                    self.record_update(node.target.id, g.ref, node, frame)  # `b -= lr * gb`
            if other.kind in ("number", "unknown", "external"):
                return Value("grads", ref=g.ref, traced=g.traced, jtraced=g.jtraced, fw="jax")
        kinds = {left.kind, right.kind}
        if kinds <= {"container", "dict"} or "str" in kinds or not (self.claims(left) or self.claims(right)):
            return None
        if kinds == {"number"}:
            kind = "number"
        else:
            kind = self.arith_kind(left, right)
        dtype = binop_dtype(op, left.dtype, right.dtype)
        if kind == FIELD:
            out = combine("unknown", left, right, dtype=dtype)
            return replace(out, extra=(FIELD,))
        return combine(kind, left, right, dtype=dtype, fw="jax" if kind == "tensor" else None)

    def compare(self, node: ast.Compare, values: list, frame: Frame):
        if all(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops):
            return None
        if not any(self.claims(v) for v in values):
            return None
        merged = join(*values)
        if len(node.ops) > 1 and len(values) > 2:  # `0 < h < 1` is `(0 < h) and (h < 1)`: Python asks `bool(0 < h)`
            self.test(node, join(values[0], values[1]), frame, chained=True)
        if all(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops) and values[-1].kind != "tensor":
            # `"labels" in batch`: a test of a dict's keys (or a list's items), static even under jit
            return Value("number", dtype="bool", deps=merged.deps)
        kind = self.arith_kind(values[0], values[1]) if len(values) > 1 else "unknown"
        # a comparison has no derivative: under grad alone the result is concrete, under jit it stays abstract
        extra = (FIELD,) if kind == FIELD else ()
        kind = "unknown" if kind == FIELD else kind
        if kind == "tensor" and merged.srcs:  # an array mask of what is differentiated: its gradient stops here
            out = self.cut(node, compare_text(node), "zero_grad", values, frame, dtype="bool")
            return replace(out, traced=merged.jtraced, jtraced=merged.jtraced)
        return Value(kind, dtype="bool", cuts=merged.cuts, deps=merged.deps, traced=merged.jtraced,
                     jtraced=merged.jtraced, fw="jax" if kind == "tensor" else None, extra=extra)

    def test(self, node: ast.AST, value: Value, frame: Frame, chained: bool = False) -> None:
        # only values known to be traced arrays: a traced leaf argument itself, jnp/lax results, arithmetic and
        # comparisons on them; never a container, a field of a pytree/struct (often static) or the result of an
        # unknown call
        if value.jtraced and (value.kind in ARRAY_KINDS or TRACED_ARG in value.extra) and FIELD not in value.extra \
                and self.transforms(frame):
            self.interp.emit(TracedCondition(node, frame.module, self.transform_name(frame), chained), frame)

    def after_value(self, node: ast.AST, value: Value, frame: Frame) -> Value:
        if self.recording is not None:
            self.recording[id(node)] = value
        kind = type(node)
        if kind is ast.Constant and value.kind == "number" and value.dtype == "int":
            return Value("number", dtype="int", made_at=node)
        if kind is ast.UnaryOp and value.kind == "number" and value.made_at is not None:
            return replace(value, made_at=node)
        return value

    # ================================================================== pytrees
    def subscript(self, node: ast.Subscript, base: Value, index: Value, frame: Frame):
        key = _const_key(node.slice)
        if base.kind == "grads":
            return self.output_of(base, key) or base
        if isinstance(base.ref, tuple) and base.ref[:1] == (STOPPED_TREE,) and isinstance(key, str):
            return self.refine(base, key)
        if base.refinable and base.items is None:
            if isinstance(key, str):
                return replace(self.refine(base, key), cuts=base.cuts + tuple(c for c in index.cuts
                                                                              if c not in base.cuts))
            # an index passes no gradient back: what computed it (`table[(gate * 9).astype(int)]`) keeps the
            # index's cuts, as the selected value does
            return Value("tensor" if base.kind == "tensor" else "unknown", srcs=base.srcs,
                         cuts=dedup_cuts(base.cuts, index.cuts), dtype=base.dtype, fw=base.fw, traced=base.traced,
                         jtraced=base.jtraced, deps=base.deps | index.deps)
        return None

    def refine(self, value: Value, key) -> Value:
        """A part of a differentiated pytree is named by its key (`params.w1`); a part of a stopped tree is cut
        as that part."""
        if isinstance(value.ref, tuple) and value.ref[:1] == (STOPPED_TREE,):
            node = value.ref[1]
            cuts = tuple(c.with_lost(frozenset(f"{o}.{key}" for o in c.lost)) if c.node is node else c
                         for c in value.cuts)
            return replace(value, cuts=cuts)
        if value.refinable:
            return replace(value, srcs=frozenset(f"{s}.{key}" for s in value.srcs), name=None)
        return value

    def unpack(self, value: Value, n: int):
        if value.kind == "grads":
            return [self.output_of(value, i, n) or value for i in range(n)]
        if value.refinable and value.items is None:
            return [self.refine(value, i) for i in range(n)]
        return None

    def output_of(self, value: Value, key, n: int | None = None) -> Value | None:
        """Output `key` of gradients taken with a literal tuple `argnums` (`gw, gb = grad_fn(w, b, x)`,
        `grads[1]`): the gradient with respect to argument `argnums[key]`."""
        grads = value.ref
        if not isinstance(grads, Gradients) or not isinstance(key, int) or grads.index is not None:
            return None
        gf = grads.transform
        if not isinstance(gf.argnums_node, (ast.Tuple, ast.List)) or gf.argnums is None or gf.mode not in (
                "grad", "value_and_grad"):
            return None
        count = len(gf.argnums)
        if (n is not None and n != count) or not -count <= key < count:
            return None
        return replace(value, ref=self.gradients_of(gf, grads.call, key % count))

    def stop_tree(self, node: ast.AST, tree: Value, frame: Frame, depth: int = 0,
                  op: str = "tree_map(lax.stop_gradient)") -> Value:
        """`tree_map(lax.stop_gradient, tree)` (or `lax.stop_gradient(tree)`): every leaf cut. A differentiated
        pytree argument keeps naming its parts, so `stopped["scale"]` carries a cut of `params.norm.scale` (see
        `refine`)."""
        if tree.items is not None and depth < 6:
            items = tuple(self.stop_tree(node, v, frame, depth + 1, op) for v in tree.items)
            merged = join(*items) if items else Value()
            return replace(tree, items=items, srcs=EMPTY, cuts=merged.cuts)
        out = self.cut(node, op, "stop_gradient", [tree], frame, result_kind=tree.kind)
        if tree.refinable:
            return replace(out, refinable=True, ref=(STOPPED_TREE, node))
        return out

    def is_stop_fn(self, expr: ast.AST, frame: Frame) -> bool:
        """`lax.stop_gradient` passed as a function value, or `lambda x: lax.stop_gradient(x)`."""
        names = frame.module.names
        if (names.qualname(expr) or "") in api.STOP_GRADIENT:
            return True
        if isinstance(expr, ast.Lambda) and len(expr.args.args) == 1 and isinstance(expr.body, ast.Call):
            body = expr.body
            return (names.qualname(body.func) or "") in api.STOP_GRADIENT and len(body.args) == 1 and isinstance(
                body.args[0], ast.Name) and body.args[0].id == expr.args.args[0].arg
        return False

    def store_subscript(self, target: ast.Subscript, base: Value, value: Value, frame: Frame, stmt) -> bool:
        array = base.kind == "tensor" and base.fw == "jax" and TRACED_ARG not in base.extra
        # a part of a differentiated pytree indexed the way only an array is (`W[mask == 0]`, `W[:, 0]`): a
        # tracer, whatever the pytree holds
        traced_leaf = base.refinable and base.traced and isinstance(target.slice, ARRAY_INDEXES)
        if (array or traced_leaf) and base.items is None and isinstance(target.value, (ast.Name, ast.Attribute)):
            self.interp.emit(ItemAssignment(stmt if stmt is not None else target, frame.module, target), frame)
            return True
        return False

    # ================================================================== updates by gradients
    def check_update(self, node: ast.Call, qn: str, args: list, frame: Frame) -> None:
        positions = [i for i, a in enumerate(args) if a.kind == "grads" or (a.items and any(
            v.kind == "grads" for v in a.items))]
        if not positions:
            return
        g = args[positions[0]]
        grads = g.ref if g.kind == "grads" else next((v.ref for v in g.items or () if v.kind == "grads"), None)
        if qn not in api.APPLY_UPDATES and not (node.args and self.steps_by_gradient(node.args[0], frame)):
            return  # `tree_map(np.isclose, grads, expected)` compares, it updates nothing
        for i, expr in enumerate(node.args):
            if i not in positions and isinstance(expr, (ast.Name, ast.Attribute)) and dotted(expr) and (
                    qn in api.APPLY_UPDATES or i > 0):  # `params`, or a learner's `self.params`
                self.record_update(dotted(expr), grads, node, frame)
                break

    def steps_by_gradient(self, expr: ast.AST, frame: Frame, depth: int = 0) -> bool:
        """Is `expr` (the function `tree_map` applies) a parameter update such as `lambda p, g: p - lr * g`?"""
        names = frame.module.names
        fn = expr
        if isinstance(expr, ast.Call) and (names.qualname(expr.func) or "") in api.PARTIAL and expr.args:
            return depth < 3 and self.steps_by_gradient(expr.args[0], frame, depth + 1)
        if isinstance(expr, ast.Name):
            value = self.interp.lookup(expr.id, frame)
            fn = value.func.node if value is not None and value.kind == "function" and value.func is not None else None
        if fn is None and isinstance(expr, (ast.Name, ast.Attribute)):
            return (names.qualname(expr) or "") in api.UPDATE_OPS
        if not isinstance(fn, FUNCTION_SCOPES):
            return False
        return any(isinstance(sub.op, (ast.Sub, ast.Add)) for sub in self.scopes(frame.module).within((ast.BinOp, ast.AugAssign), fn))

    def record_update(self, name: str, grads, node: ast.AST, frame: Frame) -> None:
        if not isinstance(grads, Gradients):
            return
        # the update must be in the function that took the gradient: a helper's parameter that happens to share
        # the caller's variable name (`def allclose(x, y)`) is another variable
        home = self.scopes(frame.module).enclosing(grads.call, FUNCTION_SCOPES)
        here = frame.func.node if frame.func is not None else None
        if home is not here:
            return
        self.interp.emit(GradientsApplied(node, frame.module, name, grads), frame)

    # ================================================================== what raises under a trace
    def check_loop(self, node: ast.Call, qn: str, args: list, frame: Frame) -> None:
        if not any(isinstance(t, GradTransform) and t.mode in api.REVERSE_MODES for t in self.transforms(frame)):
            return
        origins = set(flat(args[-1]).srcs) if args else set()
        for expr in node.args:
            fn = expr
            if isinstance(expr, ast.Name):
                value = self.interp.lookup(expr.id, frame)
                fn = value.func.node if value is not None and value.func is not None else None
            if isinstance(fn, (ast.Lambda, ast.FunctionDef)):
                for sub in self.scopes(frame.module).within(ast.Name, fn):
                    if isinstance(sub.ctx, ast.Load):
                        value = self.interp.lookup(sub.id, frame)
                        if value is not None:
                            origins |= value.srcs
        if not origins:
            return
        if qn.endswith("fori_loop") and len(args) >= 2 and not any(flat(a).jtraced for a in args[:2]):
            return  # concrete bounds (outside jit, even when computed from a differentiated value): a scan
        self.interp.emit(ReverseLoop(node, frame.module, qn.rsplit(".", 1)[-1]), frame)

    def check_where(self, node: ast.Call, seen: dict, frame: Frame) -> None:
        """`jnp.where(c, jnp.log(x), 0.)`: the masked branch's gradient can be NaN (inf * 0) at x == 0."""
        if not any(isinstance(t, GradTransform) for t in self.transforms(frame)):
            return
        names = frame.module.names
        for n, branch in enumerate(node.args[1:]):
            for sub in ast.walk(branch):
                arg, op = None, None
                if isinstance(sub, ast.Call) and sub.args:
                    q = names.qualname(sub.func) or ""
                    if q in api.SINGULAR_AT_ZERO:
                        arg, op = sub.args[0], "jnp." + q.rsplit(".", 1)[-1]
                    elif q in api.POWER and len(sub.args) == 2 and fractional_power(sub.args[1]):
                        arg, op = sub.args[0], q.replace("jax.numpy.", "jnp.").replace("jax.lax.", "lax.")
                elif isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Div):
                    arg, op = sub.right, "division"
                    numerator = seen.get(id(sub.left), UNKNOWN)
                    if numerator.srcs and not seen.get(id(arg), UNKNOWN).srcs:
                        # `summed / count` with a constant count: d/d summed = 1 / count is infinite too
                        self.interp.emit(MaskedSingularity(sub, frame.module, op, node, arg, n == 0,
                                                           numerator.srcs, False), frame)
                        continue
                elif isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Pow) and fractional_power(sub.right):
                    arg, op = sub.left, f"** {ast.unparse(sub.right)}"
                if arg is None:
                    continue
                value = seen.get(id(arg), UNKNOWN)
                if value.srcs and GUARDED not in value.extra:
                    self.interp.emit(MaskedSingularity(sub, frame.module, op, node, arg, n == 0, value.srcs, True),
                                     frame)

    # ================================================================== what nothing called
    def analyse_uncalled(self) -> None:
        interp = self.interp
        root = interp.root
        frame = Frame(root, interp.globals.get(root.path, {}), top=True)
        for gf in list(self.grad_transforms.values()):
            ref = self.underlying(gf.fn)
            if ref is None or (id(ref.node), gf.argnums) in self.called:
                continue
            count = required(ref.node, len(ref.bound))
            self.call_gradfn(gf.node, gf, [UNKNOWN] * count, {}, frame, standalone=True)
        transformed = {id(ref.node) for ref in map(self.underlying, (t.fn for t in self.trace_transforms.values()))
                       if ref is not None}
        # uncalled callers first (a test calling a jitted function under `pytest.raises`), then what is left
        for fn, info in self.relevant_functions():
            if id(fn) in interp.analysed or id(fn) in transformed:
                continue
            func = FunctionRef(fn, info.module if info is not None else root, info)
            method = info is not None and func.params()[:1] in (["self"], ["cls"])
            self.run_on_its_own(func, Value("object", cls=info) if method else None, lambda name: UNKNOWN)
        for tf in list(self.trace_transforms.values()):
            ref = self.underlying(tf.fn)
            if ref is not None and id(ref.node) not in interp.analysed:
                self.call_jitfn(tf.node, tf, [UNKNOWN] * required(ref.node, len(ref.bound)), {}, frame)


def holds_arrays(value: Value, filtered: bool, depth: int = 0) -> bool:
    """Is this argument traced by a transform (a `filtered` one traces only arrays and pytrees of arrays)?"""
    if not filtered or value.kind in ("tensor", "array"):
        return True
    return bool(value.items) and depth < 6 and any(holds_arrays(v, filtered, depth + 1) for v in value.items)


def leaves(value: Value, path: str, dotted: str | None = None, depth: int = 0):
    """(path, source name, leaf) of a pytree value: `params['w']` and `params.w`, `batch[0]` and `batch.0`; the
    source name only along string keys (None below a list or tuple)."""
    if dotted is None and depth == 0:
        dotted = path
    if value.items is not None and depth < 6:
        for i, item in enumerate(value.items):
            key = value.keys[i] if value.keys is not None else i
            named = f"{dotted}.{key}" if dotted is not None and isinstance(key, str) else None
            yield from leaves(item, f"{path}[{key!r}]" if isinstance(key, str) else f"{path}[{key}]", named, depth + 1)
    else:
        yield path, dotted, value
