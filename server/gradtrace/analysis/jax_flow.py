"""JAX value flow: which arguments `jax.grad`/`value_and_grad`/`vjp` differentiate, what is traced, what cuts.

Differentiated arguments (by `argnums`) are origins named by their parameter and pytree keys
(`params.w1`); `jax.jit`/`vmap` make every non-static argument an abstract tracer. The interpreter
evaluates each differentiated or jitted function at its call sites (with the real arguments, so an
int leaf in a params dict built elsewhere is seen) and once on its own, and records:
cuts that disconnect a differentiated argument from the function's output, integer inputs, tracer
conversions (`float()`, `np.asarray`, `.item()`, `.tolist()`), Python control flow on abstract
tracers, in-place item assignment on arrays, reverse-mode through `while_loop`, and which variable
the resulting gradients update (to check `argnums`).

`jax_facts(ctx)` returns the `JaxFacts` shared by the GT3xx rules.
"""

from __future__ import annotations

import ast
import bisect
from dataclasses import dataclass, field, replace
from functools import cached_property

from gradtrace.analysis.flow_core import (
    EMPTY,
    Cut,
    FuncRef,
    Interp,
    Val,
    const_key,
    covered,
    flat,
    join,
    kwarg,
)
from gradtrace.analysis.source import IMPORTED_AS
from gradtrace.analysis.tf_flow import dtype_of, literal_dtype
from gradtrace.analysis.where_guard import fractional_power

GRAD_FUNCS = {"jax.grad": "grad", "jax.value_and_grad": "value_and_grad", "jax.jacrev": "jacrev",
              "jax.jacfwd": "jacfwd", "jax.hessian": "hessian", "equinox.filter_grad": "grad",
              "equinox.filter_value_and_grad": "value_and_grad", "flax.nnx.grad": "grad",
              "flax.nnx.value_and_grad": "value_and_grad"}
JIT_FUNCS = {"jax.jit": "jit", "jax.vmap": "vmap", "jax.pmap": "pmap", "equinox.filter_jit": "jit",
             "flax.nnx.jit": "jit", "flax.nnx.vmap": "vmap"}
JAX_ROOTS = IMPORTED_AS["jax"]
PLAIN_STATEMENTS = (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Expr)
STOP = {"jax.lax.stop_gradient", "jax.numpy.stop_gradient"}
ZERO_GRAD = {"round", "floor", "ceil", "sign", "rint", "trunc", "fix"}
ARGMAX_LIKE = {"argmax", "argmin", "argsort", "searchsorted", "digitize", "nonzero", "argwhere"}
FLOAT_CTORS = {"zeros", "ones", "empty", "full", "zeros_like", "ones_like", "eye", "linspace", "identity"}
PARTIAL = {"partial", "functools.partial"}
UNSAFE = {"jax.numpy.log", "jax.numpy.sqrt", "jax.numpy.arcsin", "jax.numpy.arccos", "jax.numpy.log2",
          "jax.numpy.log10", "jax.numpy.reciprocal", "jax.numpy.arctanh"}
TREE_MAP = {"jax.tree_util.tree_map", "jax.tree_map", "jax.tree.map"}
UPDATE_OPS = {"operator.sub", "operator.add", "jax.numpy.subtract", "jax.numpy.add", "numpy.subtract", "numpy.add"}
# lax operations that take and return whole pytrees (collectives keep their input's structure)
COLLECTIVES = {"psum", "pmean", "pmax", "pmin", "all_gather", "ppermute", "psum_scatter", "all_to_all", "pshuffle"}
PYTREE_LAX = {"cond", "switch", "scan", "map", "associative_scan", "custom_root", "custom_linear_solve"}
# kinds whose truth value a trace cannot decide (plus "unknown" traced leaf arguments, see TRACED_ARG)
ARRAY_LIKE = frozenset({"jarray", "pyfloat", "pyint", "pybool", "numpy"})
OPAQUE = "field"  # arithmetic on a field of an object of unknown type: maybe an array, maybe static
STOPPED_TREE = "stopped-tree"  # `ref` (STOPPED_TREE, node) of a differentiated pytree under tree_map(stop_gradient)
TRACED_ARG = "traced-arg"  # `ref` of a leaf argument traced by jit/vmap: itself an abstract array
ARRAY_METHODS = {"sum", "mean", "max", "min", "any", "all", "prod", "std", "var", "reshape", "squeeze", "ravel",
                 "flatten", "transpose", "dot", "cumsum", "clip", "conj"}


@dataclass(eq=False)
class GradFn:
    fn: Val  # a func / partial value
    argnums: tuple | None  # None: not a constant
    mode: str
    node: ast.AST
    jit: bool = False
    has_aux: bool = False
    argnums_node: ast.AST | None = None
    static: frozenset = EMPTY


@dataclass(eq=False)
class JitFn:
    fn: Val
    mode: str
    node: ast.AST
    static: frozenset = EMPTY  # static positions and names


@dataclass
class Event:
    node: ast.AST
    message_parts: dict = field(default_factory=dict)


@dataclass
class JaxFacts:
    lost_cuts: dict = field(default_factory=dict)  # cut node -> (Cut, lost origins, GradFn)
    int_args: dict = field(default_factory=dict)  # node -> (what, GradFn, call node)
    conversions: dict = field(default_factory=dict)  # node -> (op, severity, why)
    control_flow: dict = field(default_factory=dict)  # test node -> (what, transform)
    inplace: dict = field(default_factory=dict)  # stmt -> (target name)
    while_loops: dict = field(default_factory=dict)  # node -> op
    # grad call node -> [(updated name, GradFn, update node, output index or None)]: the variables its
    # gradients update; the index says which output of a tuple `argnums` (None: all of them / unknown)
    argnums: dict = field(default_factory=dict)
    grad_calls: list = field(default_factory=list)
    # unsafe branch node -> (op, where node, its argument, in the first branch?, differentiated origins,
    # is the argument itself differentiated? (False: only the numerator of a division is))
    nan_where: dict = field(default_factory=dict)


def const_argnums(node: ast.AST | None):
    if node is None:
        return (0,)
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return (node.value,)
    if isinstance(node, (ast.Tuple, ast.List)) and all(
            isinstance(e, ast.Constant) and isinstance(e.value, int) for e in node.elts):
        return tuple(e.value for e in node.elts)
    return None


ANY_STATIC = "*"  # static arguments given by a variable: any argument may be static


def static_of(node: ast.Call) -> frozenset:
    """Positions and names a transform keeps static (`ANY_STATIC` when they are not literals)."""
    out = set()
    in_axes = kwarg(node, "in_axes")
    if isinstance(in_axes, (ast.Tuple, ast.List)):  # vmap: unbatched arguments are not traced
        out |= {i for i, e in enumerate(in_axes.elts)
                if not isinstance(e, ast.Constant) or e.value is None}  # a variable axis may be None too
    elif in_axes is not None and not isinstance(in_axes, ast.Constant):
        out.add(ANY_STATIC)
    for name in ("static_argnums", "static_argnames"):
        v = kwarg(node, name)
        if v is None or (isinstance(v, ast.Constant) and v.value is None):
            continue
        elts = v.elts if isinstance(v, (ast.Tuple, ast.List)) else [v]
        if not all(isinstance(e, ast.Constant) for e in elts):
            out.add(ANY_STATIC)
        out |= {e.value for e in elts if isinstance(e, ast.Constant)}
    return frozenset(out)


def is_static(static: frozenset, key) -> bool:
    return key in static or ANY_STATIC in static


class JaxInterp(Interp):
    framework = "jax"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.facts = JaxFacts()
        self.contexts: list = []  # active transforms: ("grad", GradFn) | ("jit", JitFn)
        self.gradfns: dict = {}  # node -> GradFn
        self.jitfns: dict = {}
        self.called: set = set()

    def context_key(self):
        return tuple(id(c[1]) for c in self.contexts)

    # ------------------------------------------------------------- transforms
    def transform(self, node: ast.Call, qual: str, args, kwargs) -> Val | None:
        if qual in GRAD_FUNCS and (args or kwarg(node, "fun") is not None):
            fn = args[0] if args else kwargs.get("fun")
            argnums_node = kwarg(node, "argnums", 1)
            has_aux = kwarg(node, "has_aux")
            if fn.kind == "gradfn" and isinstance(fn.ref, GradFn):  # grad of grad: differentiate the inner function again
                inner = fn.ref
                return Val(kind="gradfn", ref=GradFn(inner.fn, const_argnums(argnums_node), GRAD_FUNCS[qual], node,
                                                     inner.jit, False, argnums_node))
            # grad of a jitted function (`@jax.jit def loss` then `jax.grad(loss)`): the jit still traces
            # the function abstractly, with its own static arguments
            jitted = fn.kind == "jitfn" and isinstance(fn.ref, JitFn) and fn.ref.mode == "jit"
            gf = self.gradfns.get(node) or GradFn(fn, const_argnums(argnums_node), GRAD_FUNCS[qual], node,
                                                 jit=jitted,
                                                 has_aux=isinstance(has_aux, ast.Constant) and bool(has_aux.value),
                                                 argnums_node=argnums_node, static=fn.ref.static if jitted else EMPTY)
            allow_int = kwarg(node, "allow_int")
            gf.allow_int = isinstance(allow_int, ast.Constant) and bool(allow_int.value)
            self.gradfns[node] = gf
            return Val(kind="gradfn", ref=gf)
        if qual in JIT_FUNCS and args:
            fn = args[0]
            mode = JIT_FUNCS[qual]
            if fn.kind == "gradfn" and isinstance(fn.ref, GradFn):
                g = fn.ref
                gf = GradFn(g.fn, g.argnums, g.mode, g.node, True, g.has_aux, g.argnums_node, static_of(node))
                self.gradfns.setdefault(node, gf)
                return Val(kind="gradfn", ref=gf)
            jf = self.jitfns.get(node) or JitFn(fn, mode, node, static_of(node))
            self.jitfns[node] = jf
            return Val(kind="jitfn", ref=jf)
        return None

    def decorate(self, dec, val):
        target = dec.func if isinstance(dec, ast.Call) else dec
        qual = self.names.qualname(target) or ""
        if qual in self.CUSTOM_GRADIENT:
            return super().decorate(dec, val)
        if qual in PARTIAL and isinstance(dec, ast.Call) and dec.args:
            inner = self.names.qualname(dec.args[0]) or ""
            fake = ast.Call(func=dec.args[0], args=[], keywords=dec.keywords)
            ast.copy_location(fake, dec)
            fake.end_lineno, fake.end_col_offset = dec.end_lineno, dec.end_col_offset
            return self.transform(fake, inner, [val], {}) or val
        if qual in GRAD_FUNCS or qual in JIT_FUNCS:
            call = dec if isinstance(dec, ast.Call) else ast.Call(func=dec, args=[], keywords=[])
            if not isinstance(dec, ast.Call):
                ast.copy_location(call, dec)
                call.end_lineno, call.end_col_offset = dec.end_lineno, dec.end_col_offset
            return self.transform(call, qual, [val], {}) or val
        return val

    def underlying(self, fn: Val):
        """(FuncRef, bound leading args) of a function value, or (None, [])."""
        bound: list = []
        while fn.kind == "partial" and isinstance(fn.ref, tuple):
            bound = list(fn.ref[1]) + bound
            fn = fn.ref[0]
        if fn.kind == "func" and isinstance(fn.ref, FuncRef):
            if fn.ref.self_val is not None:
                bound = [fn.ref.self_val] + bound
            return fn.ref, bound
        if fn.kind == "jitfn" and isinstance(fn.ref, JitFn):
            return self.underlying(fn.ref.fn)
        return None, []

    def call_gradfn(self, node, gf: GradFn, args, kwargs, standalone=False):
        ref, bound = self.underlying(gf.fn)
        starred = any(isinstance(a, ast.Starred) for a in getattr(node, "args", []))
        argnums = gf.argnums if gf.argnums is not None else (0,)
        vals = []
        names = self.params(ref.node) if ref is not None else []
        for i, arg in enumerate(args):
            pos = i + len(bound)
            pname = names[pos] if pos < len(names) else f"arg{i}"
            if not standalone and i in argnums and not starred:
                self.check_int(arg, gf, node, pname, node.args[i] if i < len(node.args) else node)
            if i in argnums and not (starred and i >= self.first_star(node)):
                vals.append(Val(frozenset({pname}), EMPTY, self.array_kind(arg), "float", None, None, True,
                                gf.jit or arg.jtraced, None, True))
            else:
                vals.append(self.trace(arg, gf.jit and not (is_static(gf.static, i) or is_static(gf.static, pname))))
        if ref is None:
            self.facts.grad_calls.append((node, gf, None))
            return Val(kind="grads")
        result = self.invoke(ref, bound + vals, {k: self.trace(v, gf.jit and not is_static(gf.static, k))
                                                 for k, v in kwargs.items()},
                             call_node=node, extra=(("grad", gf),))
        self.facts.grad_calls.append((node, gf, result))
        traced = any(flat(a).traced for a in args)  # outputs are concrete unless the caller is traced
        jtraced = any(flat(a).jtraced for a in args)
        grads = Val(kind="grads", ref=(gf, node), traced=traced, jtraced=jtraced)
        if gf.mode == "value_and_grad":
            value = Val(EMPTY, EMPTY, "jarray", "float", None, None, traced, jtraced)
            if gf.has_aux and result.items:
                value = Val(kind="seq", items=((0, value), (1, replace(flat(result.item(1) or Val()), origins=EMPTY,
                                                                        cuts=EMPTY))), traced=traced, jtraced=jtraced)
            return Val(kind="seq", items=((0, value), (1, grads)), ref=(gf, node))
        if gf.has_aux and gf.mode == "grad":  # (grads, aux)
            aux = replace(flat(result.item(1) or Val()), origins=EMPTY, cuts=EMPTY) if result.items else Val()
            return Val(kind="seq", items=((0, grads), (1, aux)), ref=(gf, node))
        return grads

    def output_of(self, val: Val, key, n: int | None = None) -> Val | None:
        """Output `key` of gradients taken with a literal tuple `argnums` (`gw, gb = grad_fn(w, b, x)`,
        `grads[1]`): the gradient with respect to argument `argnums[key]`."""
        if val.kind != "grads" or not isinstance(val.ref, tuple) or len(val.ref) != 2 or not isinstance(key, int):
            return None
        gf, call = val.ref
        if not isinstance(gf.argnums_node, (ast.Tuple, ast.List)) or gf.argnums is None or gf.mode not in (
                "grad", "value_and_grad"):
            return None
        count = len(gf.argnums)
        if (n is not None and n != count) or not -count <= key < count:
            return None
        return replace(val, ref=(gf, call, key % count))

    def unpack(self, val, key, n):
        return self.output_of(val, key, n) or super().unpack(val, key, n)

    def e_Subscript(self, node):
        out = super().e_Subscript(node)
        if out.kind == "grads" and isinstance(node.value, ast.Name):
            base = self.lookup(node.value.id)
            if base is not None:
                return self.output_of(base, const_key(node.slice)) or out
        return out

    def first_star(self, node):
        for i, a in enumerate(getattr(node, "args", [])):
            if isinstance(a, ast.Starred):
                return i
        return 10 ** 6

    def array_kind(self, val: Val) -> str:
        return "jarray" if val.kind in ("jarray", "pyfloat", "numpy") else "unknown"

    def trace(self, val: Val, jit: bool) -> Val:
        if not jit:
            return replace(val, origins=EMPTY)
        if val.kind in ("func", "gradfn", "jitfn", "partial", "str", "none"):
            return val
        leaf = val.kind == "unknown" and val.items is None and val.ref is None
        return replace(val, origins=EMPTY, traced=True, jtraced=True, ref=TRACED_ARG if leaf else val.ref,
                       items=tuple((k, self.trace(v, True)) for k, v in val.items) if val.items else val.items)

    def check_int(self, arg: Val, gf, call_node, pname, arg_node):
        if getattr(gf, "allow_int", False):
            return
        for path, leaf in self.leaves(arg, pname):
            if leaf.dtype == "int" and leaf.kind in ("pyint", "jarray", "numpy", "pybool"):
                where = leaf.node if leaf.node is not None and leaf.kind != "pyint" else (
                    leaf.node if leaf.node is not None else arg_node)
                self.facts.int_args.setdefault(where, (path, gf, call_node, leaf))

    def leaves(self, val: Val, path: str, depth=0):
        if val.items is not None and depth < 6:
            for k, v in val.items:
                yield from self.leaves(v, f"{path}[{k!r}]" if isinstance(k, str) else f"{path}[{k}]", depth + 1)
        else:
            yield path, val

    def call_jitfn(self, node, jf: JitFn, args, kwargs):
        ref, bound = self.underlying(jf.fn)
        if ref is None:
            return None
        names = self.params(ref.node)
        vals = []
        for i, a in enumerate(args):
            pos = i + len(bound)
            static = is_static(jf.static, i) or (pos < len(names) and is_static(jf.static, names[pos]))
            vals.append(self.trace(a, not static))
        kw = {k: self.trace(v, not is_static(jf.static, k)) for k, v in kwargs.items()}
        out = self.invoke(ref, bound + vals, kw, call_node=node, extra=(("jit", jf),))
        outer = any(flat(a).jtraced for a in args)
        return out if outer else untrace(out)

    def enter_function(self, fn, frame, args, kwargs, extra):
        for ctx in extra:
            self.contexts.append(ctx)

    def leave_function(self, fn, frame, result, extra):
        for kind, obj in extra:
            if kind == "grad":
                target = flat(result.item(0)) if obj.has_aux and result.items else flat(result)
                for cut in target.cuts:
                    lost = frozenset(o for o in cut.origins if not covered(o, target.origins))
                    if lost:
                        old = self.facts.lost_cuts.get(cut.node)
                        self.facts.lost_cuts[cut.node] = (cut, (old[1] if old else EMPTY) | lost, obj)
            if self.contexts and self.contexts[-1][1] is obj:
                self.contexts.pop()

    @property
    def jitting(self):
        return any(k == "jit" or getattr(o, "jit", False) for k, o in self.contexts)

    # ------------------------------------------------------------- calls
    def call(self, node, qual, func, args, kwargs):
        qual = qual or ""
        method = func.ref[1] if func.kind == "method" and isinstance(func.ref, tuple) else None
        base = func.ref[2] if method else None
        t = self.transform(node, qual, args, kwargs)
        if t is not None:
            return t
        if func.kind == "gradfn" and isinstance(func.ref, GradFn):
            return self.call_gradfn(node, func.ref, args, kwargs)
        if func.kind == "jitfn" and isinstance(func.ref, JitFn):
            return self.call_jitfn(node, func.ref, args, kwargs)
        if func.kind == "partial" and isinstance(func.ref, tuple):
            inner, bound, bkw = func.ref
            return self.e_call_val(node, inner, list(bound) + list(args), {**bkw, **kwargs})
        if qual in PARTIAL and args:
            return Val(kind="partial", ref=(args[0], tuple(args[1:]), dict(kwargs)))
        if qual == "jax.vjp" and args:
            gf = self.gradfns.get(node) or GradFn(args[0], tuple(range(len(args) - 1)), "vjp", node)
            self.gradfns[node] = gf
            out = self.call_gradfn(node, gf, args[1:], {})
            return Val(kind="seq", items=((0, Val(kind="jarray")), (1, Val(kind="func"))), ref=out.ref)
        if qual in STOP:
            return self.cut(node, "lax.stop_gradient", "stop_gradient", args[:1])
        if qual in ("jax.lax.while_loop", "jax.lax.fori_loop"):
            self.check_loop(node, qual, args)
            return join(*(flat(a) for a in args if a.kind != "func"), kind="jarray")
        if qual in TREE_MAP and len(node.args) == 2 and not node.keywords and self.is_stop_fn(node.args[0]):
            return self.stop_tree(node, args[1])
        if qual in TREE_MAP or qual == "optax.apply_updates":
            self.check_update(node, qual, args)
        if method == "update" and args and args[0].kind == "grads":
            return Val(kind="seq", items=((0, args[0]), (1, Val())), ref=args[0].ref)
        if method in ("item", "tolist") and base is not None and base.traced:
            return self.convert(node, f".{method}()", base, silent=(method == "item"))
        if qual in ("jax.device_get",):
            return replace(join(*(flat(a) for a in args)), kind="numpy", traced=False, jtraced=False)
        if qual == "range" and any(a.jtraced for a in args):
            return self.convert(node, "range()", join(*(a for a in args if a.jtraced)))
        if qual in ("float", "int", "bool", "complex") and args and args[0].traced:
            return self.convert(node, f"{qual}()", args[0])
        if qual.startswith(("numpy.", "math.", "scipy.")):
            traced = [a for a in args if a.traced]
            if traced:
                return self.convert(node, "np." + qual.split(".", 1)[1] if qual.startswith("numpy.") else qual,
                                    join(*traced))
            out = self.jnp_call(node, qual, args, kwargs)
            return replace(out, kind="numpy")
        if method in ARRAY_METHODS and base is not None and base.ref == TRACED_ARG:
            out = join(flat(base), *(flat(a) for a in args), kind="jarray")  # `x.sum()` on a traced argument
            return replace(out, node=node)
        if method in ARGMAX_LIKE and base is not None:
            return self.cut(node, f".{method}()", "int_cast", [base], dtype="int")
        if method in ZERO_GRAD and base is not None and base.kind == "jarray":
            return self.cut(node, f".{method}()", "zero_grad", [base])
        if method == "astype" and node.args and dtype_of(node.args[0], self.names) == "int":
            return self.cut(node, ".astype(int)", "int_cast", [base], dtype="int")
        if method == "astype" and node.args and base is not None:
            return replace(flat(base), dtype=dtype_of(node.args[0], self.names), node=node, ref=None)
        if qual.startswith(("jax.numpy.", "jax.nn.", "jax.random.", "jax.lax.", "jax.scipy.")):
            return self.jnp_call(node, qual, args, kwargs)
        return None

    def e_call_val(self, node, func, args, kwargs):
        if func.kind == "gradfn" and isinstance(func.ref, GradFn):
            return self.call_gradfn(node, func.ref, args, kwargs)
        if func.kind == "jitfn" and isinstance(func.ref, JitFn):
            return self.call_jitfn(node, func.ref, args, kwargs)
        return self.default_call(node, None, func, args, kwargs)

    def jnp_call(self, node, qual, args, kwargs):
        tail = qual.rsplit(".", 1)[-1]
        if tail == "where" and len(node.args) == 3 and qual.startswith("jax.numpy."):
            self.check_where(node)
            out = join(*(flat(a) for a in args), kind="jarray")
            return replace(out, kind="jarray", ref="guarded", dtype=None)
        if tail in ("maximum", "clip", "abs") and qual.startswith("jax.numpy."):
            out = join(*(flat(a) for a in args), kind="jarray")
            return replace(out, kind="jarray", ref="guarded")
        if qual.startswith("jax.lax.") and tail in COLLECTIVES and args and args[0].kind != "jarray":
            return args[0]  # `lax.pmean(metrics_dict)` is still the dict
        if qual.startswith("jax.lax.") and tail in PYTREE_LAX:
            vals = [flat(a) for a in args if a.kind not in ("func", "gradfn", "jitfn", "partial")]
            return join(*vals, kind="unknown")  # whatever the branch/body functions return: any pytree
        if tail in ARGMAX_LIKE:
            return self.cut(node, f"jnp.{tail}", "int_cast", args[:1], dtype="int")
        if tail in ZERO_GRAD:
            return self.cut(node, f"jnp.{tail}", "zero_grad", args[:1])
        if qual == "jax.random.split" or qual == "jax.random.PRNGKey" or qual == "jax.random.key":
            return Val(kind="key")
        dtype = dtype_of(kwarg(node, "dtype"), self.names)
        if dtype is None and tail[:5] in ("float", "int8", "int16", "int32", "int64", "uint8", "bfloa", "compl"):
            dtype = dtype_of(ast.Constant(tail), self.names)
        if dtype is None:
            if tail in ("array", "asarray") and node.args:
                dtype = literal_dtype(node.args[0]) or (args[0].dtype if args else None)
            elif tail in ("arange",):
                dtype = "int" if args and all(a.dtype == "int" for a in args) else None
            elif tail in ("randint", "bernoulli", "choice", "permutation"):
                dtype = "int" if tail == "randint" else None
            elif tail in FLOAT_CTORS or qual.startswith("jax.random."):
                dtype = "float" if not (tail in ("zeros_like", "ones_like", "full") and args) else args[-1 if tail == "full" else 0].dtype
        vals = [flat(a) for a in args] + [flat(v) for v in kwargs.values()]
        out = join(*vals, kind="jarray") if vals else Val(kind="jarray")
        if dtype is None and out.dtype == "bool":
            dtype = None
        elif dtype is None:
            dtype = out.dtype
        return replace(out, kind="jarray", dtype=dtype, node=node)

    def check_where(self, node):
        """`jnp.where(c, jnp.log(x), 0.)`: the masked branch's gradient can be NaN (inf * 0) at x == 0."""
        if not any(k == "grad" for k, _ in self.contexts):
            return
        for n, branch in enumerate(node.args[1:]):
            for sub in ast.walk(branch):
                arg, op = None, None
                if isinstance(sub, ast.Call) and sub.args:
                    q = self.names.qualname(sub.func) or ""
                    if q in UNSAFE:
                        arg, op = sub.args[0], "jnp." + q.rsplit(".", 1)[-1]
                    elif q in ("jax.numpy.power", "jax.lax.pow") and len(sub.args) == 2 and fractional_power(
                            sub.args[1]):
                        arg, op = sub.args[0], q.replace("jax.numpy.", "jnp.").replace("jax.lax.", "lax.")
                elif isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Div):
                    arg, op = sub.right, "division"
                    numerator = self.eval(sub.left)
                    if numerator.origins and not self.eval(arg).origins:
                        # `summed / count` with a constant count: d/d summed = 1 / count is infinite too
                        self.facts.nan_where.setdefault(sub, (op, node, arg, n == 0, numerator.origins, False))
                        continue
                elif isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Pow) and fractional_power(sub.right):
                    arg, op = sub.left, f"** {ast.unparse(sub.right)}"
                if arg is None:
                    continue
                val = self.eval(arg)
                if val.origins and val.ref != "guarded":
                    self.facts.nan_where.setdefault(sub, (op, node, arg, n == 0, val.origins, True))

    def is_stop_fn(self, expr) -> bool:
        """`lax.stop_gradient` passed as a function value, or `lambda x: lax.stop_gradient(x)`."""
        if (self.names.qualname(expr) or "") in STOP:
            return True
        if isinstance(expr, ast.Lambda) and len(expr.args.args) == 1 and isinstance(expr.body, ast.Call):
            body = expr.body
            return (self.names.qualname(body.func) or "") in STOP and len(body.args) == 1 and isinstance(
                body.args[0], ast.Name) and body.args[0].id == expr.args.args[0].arg
        return False

    def stop_tree(self, node, tree: Val, depth=0) -> Val:
        """`tree_map(lax.stop_gradient, tree)`: every leaf cut. A differentiated pytree argument keeps naming
        its parts, so `stopped["scale"]` carries a cut of `params.norm.scale` (see `refine`)."""
        if tree.items is not None and depth < 6:
            items = tuple((k, self.stop_tree(node, v, depth + 1)) for k, v in tree.items)
            cuts = frozenset().union(*(v.cuts for _, v in items)) if items else EMPTY
            return replace(tree, items=items, origins=EMPTY, cuts=cuts)
        out = self.cut(node, "tree_map(lax.stop_gradient)", "stop_gradient", [tree], out=tree.kind)
        if tree.refinable:
            return replace(out, refinable=True, ref=(STOPPED_TREE, node))
        return out

    def refine(self, val, key):
        if isinstance(val.ref, tuple) and len(val.ref) == 2 and val.ref[0] == STOPPED_TREE and key is not None:
            node = val.ref[1]
            cuts = frozenset(replace(c, origins=frozenset(f"{o}.{key}" for o in c.origins)) if c.node is node else c
                             for c in val.cuts)
            return replace(val, cuts=cuts, node=None)
        return super().refine(val, key)

    def cut(self, node, op, kind, inputs, dtype=None, out="jarray") -> Val:
        src = join(*(flat(v) for v in inputs if v is not None)) if inputs else Val()
        cuts = src.cuts
        if src.origins:
            cuts = cuts | {Cut(node, op, kind, src.origins)}
        # under grad alone the primal of a zero-derivative op is concrete; only jit keeps it abstract
        return Val(EMPTY, cuts, out, dtype or src.dtype, node, None, src.jtraced, src.jtraced)

    def convert(self, node, op, val: Val, silent=False):
        transform = self.transform_name()
        if silent and not val.jtraced:
            if val.origins:
                self.facts.conversions.setdefault(node, (op, "warning", transform))
            return self.cut(node, op, "python", [val], out="pyfloat")
        self.facts.conversions.setdefault(node, (op, "error", transform))
        return self.cut(node, op, "python", [val], out="pyfloat")

    def transform_name(self) -> str:
        for kind, obj in reversed(self.contexts):
            if kind == "grad":
                return f"jax.{obj.mode}" + (" under jax.jit" if obj.jit else "")
            return f"jax.{obj.mode}"
        return "a JAX transformation"

    def check_loop(self, node, qual, args):
        reverse = [o for k, o in self.contexts if k == "grad" and o.mode in ("grad", "value_and_grad", "jacrev",
                                                                               "hessian", "vjp")]
        if not reverse:
            return
        origins = set(flat(args[-1]).origins) if args else set()
        for expr in node.args:
            fn = expr
            if isinstance(expr, ast.Name):
                val = self.lookup(expr.id)
                fn = val.ref.node if val is not None and isinstance(val.ref, FuncRef) else None
            if isinstance(fn, (ast.Lambda, ast.FunctionDef)):
                for sub in ast.walk(fn):
                    if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
                        val = self.lookup(sub.id)
                        if val is not None:
                            origins |= val.origins
        if not origins:
            return
        if qual.endswith("fori_loop") and len(node.args) >= 2 and all(
                isinstance(a, ast.Constant) or (isinstance(a, ast.Name) and not (self.lookup(a.id) or Val()).traced)
                for a in node.args[:2]):
            return
        self.facts.while_loops.setdefault(node, qual.rsplit(".", 1)[-1])

    def check_update(self, node, qual, args):
        grads = [i for i, a in enumerate(args) if a.kind == "grads" or (a.items and any(
            v.kind == "grads" for _, v in a.items))]
        if not grads:
            return
        g = args[grads[0]]
        ref = g.ref if isinstance(g.ref, tuple) else next((v.ref for _, v in g.items or () if v.kind == "grads"), None)
        if qual != "optax.apply_updates" and not (node.args and self.steps_by_gradient(node.args[0])):
            return  # `tree_map(np.isclose, grads, expected)` compares, it updates nothing
        for i, expr in enumerate(node.args):
            if i not in grads and isinstance(expr, ast.Name) and (qual == "optax.apply_updates" or i > 0):
                self.record_update(expr.id, ref, node)
                break

    def steps_by_gradient(self, expr, depth=0) -> bool:
        """Is `expr` (the function `tree_map` applies) a parameter update such as `lambda p, g: p - lr * g`?"""
        fn = expr
        if isinstance(expr, ast.Call) and (self.names.qualname(expr.func) or "") in PARTIAL and expr.args:
            return depth < 3 and self.steps_by_gradient(expr.args[0], depth + 1)
        if isinstance(expr, ast.Name):
            val = self.lookup(expr.id)
            fn = val.ref.node if val is not None and val.kind == "func" and isinstance(val.ref, FuncRef) else None
        if fn is None and isinstance(expr, (ast.Name, ast.Attribute)):
            return (self.names.qualname(expr) or "") in UPDATE_OPS
        if not isinstance(fn, (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef)):
            return False
        return any(isinstance(sub, ast.BinOp) and isinstance(sub.op, (ast.Sub, ast.Add)) or (
            isinstance(sub, ast.AugAssign) and isinstance(sub.op, (ast.Sub, ast.Add))) for sub in ast.walk(fn))

    def record_update(self, name, ref, node):
        if not isinstance(ref, tuple) or len(ref) not in (2, 3):
            return
        gf, call_node = ref[:2]
        index = ref[2] if len(ref) == 3 else None
        # the update must be in the function that took the gradient: a helper's parameter that happens to
        # share the caller's variable name (`def allclose(x, y)`) is another variable
        scope = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
        if self.enclosing(call_node, scope) is not self.frame.func:
            return
        updates = self.facts.argnums.setdefault(call_node, [])
        if not any(u[0] == name and u[3] == index for u in updates):
            updates.append((name, gf, node, index))

    def binop(self, a, b, node):
        out = super().binop(a, b, node)
        for g, other, other_node in ((b, a, getattr(node, "left", None)), (a, b, getattr(node, "right", None))):
            if g.kind == "grads":
                if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) and g is b and isinstance(
                        other_node, ast.Name):
                    self.record_update(other_node.id, g.ref, node)
                elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Sub) and g is b and isinstance(
                        node.target, ast.Name):
                    self.record_update(node.target.id, g.ref, node)  # `b -= lr * gb`
                if other.kind in ("pyfloat", "pyint", "unknown", "global"):
                    return Val(kind="grads", ref=g.ref)
        return out

    def arith_kind(self, a, b):
        if "jarray" in (a.kind, b.kind):
            return "jarray"
        if OPAQUE in (a.kind, b.kind) or "method" in (a.kind, b.kind):
            return OPAQUE  # a field of an object of unknown type may be a static Python value
        if a.traced or b.traced:
            return "jarray"
        return super().arith_kind(a, b)

    def merge(self, a, b):
        if a.kind == b.kind == "gradfn" and isinstance(a.ref, GradFn) and isinstance(b.ref, GradFn) and \
                a.ref.fn == b.ref.fn and a.ref.argnums == b.ref.argnums:
            return a if a.ref.jit or not b.ref.jit else b  # `if use_jit: g = jax.jit(g)`: the jitted one is stricter
        out = super().merge(a, b)
        if out.kind == "unknown" and {a.kind, b.kind} <= {"jarray", "unknown"} and all(
                v.kind == "jarray" or v.ref == TRACED_ARG for v in (a, b)):
            return replace(out, kind="jarray")  # `x = x + 1` in one branch: an array either way
        return out

    def on_test(self, node, val):
        # only values known to be traced arrays: a traced leaf argument itself, jnp/lax results, arithmetic
        # and comparisons on them; never a container, a field of a pytree/struct (often static) or the
        # result of an unknown call
        if val.jtraced and (val.kind in ARRAY_LIKE or (val.kind == "unknown" and val.ref == TRACED_ARG)):
            self.facts.control_flow.setdefault(node, self.transform_name())

    def on_subscript_store(self, stmt, target, base, val):
        if base.kind == "jarray" and base.items is None and isinstance(target.value, (ast.Name, ast.Attribute)):
            self.facts.inplace.setdefault(stmt, target)
            return
        super().on_subscript_store(stmt, target, base, val)

    def after_module(self):
        for node, gf in list(self.gradfns.items()):
            ref, bound = self.underlying(gf.fn)
            if ref is None or (ref.node, gf.argnums) in self.called:
                continue
            names = self.params(ref.node)[len(bound):]
            self.call_gradfn(node, gf, [Val() for _ in names[: self.required(ref.node, len(bound))]], {},
                             standalone=True)
        for node, jf in list(self.jitfns.items()):
            ref, bound = self.underlying(jf.fn)
            if ref is not None and ref.node not in self.evaluated:
                names = self.params(ref.node)[len(bound):]
                self.call_jitfn(node, jf, [Val() for _ in names[: self.required(ref.node, len(bound))]], {})
        super().after_module()

    def standalone(self, fn, cls):
        if fn in self.jax_relevant:
            super().standalone(fn, cls)

    @cached_property
    def jax_relevant(self) -> set:
        """Functions whose analysis on their own can find something: they name JAX (an imported JAX name),
        or call, by name, a function of this file that does. The rest of a mostly-PyTorch file that
        converts one checkpoint with `jax.numpy` is not walked again."""
        jax_names = {local for local, qual in self.names.aliases.items() if qual.split(".")[0] in JAX_ROOTS}
        fns = list(self.functions.values()) + [m for info in self.classes.values() for m in info.methods.values()]
        self.jax_lines: set[int] = set()
        if not jax_names or not fns:
            self.jax_lines = {node.lineno for node in self.ctx.source.nodes(ast.Name) if node.id in jax_names}
            return set(fns) if jax_names else set()
        spans = sorted((min([fn.lineno] + [d.lineno for d in fn.decorator_list]), fn.end_lineno or fn.lineno, i)
                       for i, fn in enumerate(fns))
        starts = [span[0] for span in spans]

        def owner(line: int) -> int | None:
            k = bisect.bisect_right(starts, line) - 1
            return spans[k][2] if k >= 0 and line <= spans[k][1] else None

        direct: set[int] = set()
        for node in self.ctx.source.nodes(ast.Name):
            if node.id in jax_names:
                k = owner(node.lineno)
                if k is not None:
                    direct.add(k)
        calls: dict[int, set[str]] = {}
        for node in self.ctx.source.nodes(ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name is not None:
                k = owner(node.lineno)
                if k is not None:
                    calls.setdefault(k, set()).add(name)
        relevant = set(direct)
        while True:
            names = {fns[k].name for k in relevant}
            more = {k for k, called in calls.items() if k not in relevant and called & names}
            if not more:
                break
            relevant |= more
        self.jax_lines = {node.lineno for node in self.ctx.source.nodes(ast.Name) if node.id in jax_names}
        self.jax_lines |= {node.lineno for node in self.ctx.source.nodes(ast.Call)
                           if getattr(node.func, "id", getattr(node.func, "attr", None)) in names}
        return {fns[k] for k in relevant}

    def exec_block(self, stmts):
        if stmts is self.tree.body and self.jax_relevant is not None:
            # Module level: a plain statement that names no JAX and calls no JAX-using function of this file
            # (a config table, a logger) binds nothing JAX can trip on.
            stmts = self.module_statements_to_run(stmts)
        super().exec_block(stmts)

    def module_statements_to_run(self, stmts):
        """Module-level statements in order, without the plain ones that neither name JAX, nor call a
        JAX-using function of this file, nor read a name that an earlier kept statement bound."""
        names_on: dict[int, set[str]] = {}
        for node in self.ctx.source.nodes(ast.Name):
            names_on.setdefault(node.lineno, set()).add(node.id)
        tainted: set[str] = set()
        kept = []
        for stmt in stmts:
            lines = range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1)
            if isinstance(stmt, PLAIN_STATEMENTS) and not any(line in self.jax_lines for line in lines) \
                    and not any(names_on.get(line, set()) & tainted for line in lines):
                continue
            kept.append(stmt)
            if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for line in lines:
                    tainted |= names_on.get(line, set())
        return kept

    def required(self, fn, bound: int) -> int:
        """How many positional parameters after `bound` have no default (the rest keep their defaults)."""
        a = fn.args
        positional = len(a.posonlyargs) + len(a.args)
        return max(0, positional - len(a.defaults) - bound)

    def invoke(self, ref, args, kwargs, *, call_node=None, standalone=False, extra=()):
        for kind, obj in extra:
            if kind == "grad":
                self.called.add((ref.node, obj.argnums))
        return super().invoke(ref, args, kwargs, call_node=call_node, standalone=standalone, extra=extra)


def untrace(val: Val, depth=0) -> Val:
    """A transformed function's output seen by an untraced caller: concrete arrays."""
    items = val.items
    if items and depth < 6:
        items = tuple((k, untrace(v, depth + 1)) for k, v in items)
    return replace(val, traced=False, jtraced=False, items=items, refinable=False)


def analyze_jax(ctx) -> JaxFacts:
    interp = JaxInterp(ctx)
    try:
        interp.run()
    except RecursionError:  # absurdly nested code: keep what was found, never fail the file
        interp.facts.incomplete = True
    facts = interp.facts
    facts.interp = interp
    return facts


def jax_facts(ctx) -> JaxFacts:
    return ctx.memo("jax", analyze_jax)
