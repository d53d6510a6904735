"""A small abstract interpreter over `ast` behind the TensorFlow value flow.

Every expression evaluates to a `Val`: the gradient *origins* it depends on differentiably (trainable
variables, watched tensors, differentiated arguments), the *cuts* upstream of it (each cut remembers the
origins it disconnected), and a coarse kind/dtype. Framework semantics live in `tf_flow`, which overrides
`call`, `attribute`, `with_item` and a few hooks.

One linear pass over the module, with same-file functions and methods inlined at their call sites
(depth- and budget-limited, memoised), then each function once on its own. No libcst, no jedi.
"""

from __future__ import annotations

import ast
import bisect
from dataclasses import dataclass, field, replace
from functools import cached_property

from gradtrace.analysis.frameworks.common import call_argument as kwarg  # noqa: F401 - rules import it from here

EMPTY: frozenset = frozenset()
STATIC_ATTRS = frozenset({"shape", "ndim", "dtype", "size", "name", "device", "rank"})
MAX_DEPTH = 5
# kinds that mean nothing without their `ref` (the GradFn/JitFn a transformed function calls)
CALLABLE_KINDS = frozenset({"gradfn", "jitfn"})


@dataclass(frozen=True, eq=False)
class Cut:
    """An operation that stops the gradient of `origins` (identity-hashed: one per evaluation)."""

    node: ast.AST
    op: str  # as the user wrote it, e.g. "tf.stop_gradient", ".numpy()", "float()"
    kind: str  # stop_gradient | numpy | python | int_cast | zero_grad
    origins: frozenset


@dataclass(frozen=True)
class Val:
    origins: frozenset = EMPTY
    cuts: frozenset = EMPTY
    kind: str = "unknown"
    dtype: str | None = None  # "int" | "float" | "bool" | None (unknown)
    node: ast.AST | None = None  # where the value was created (for literals and constructors)
    items: tuple | None = None  # containers: ((key, Val), ...)
    traced: bool = False  # JAX: a tracer (grad or jit)
    jtraced: bool = False  # JAX: an abstract tracer (jit/vmap): no concrete value
    ref: object = None  # kind-specific payload (functions, tapes, variables, classes)
    refinable: bool = False  # JAX: a differentiated argument whose pytree keys name sub-origins

    def item(self, key):
        if self.items is None:
            return None
        for k, v in self.items:
            if k == key:
                return v
        return None


UNKNOWN = Val()


def join(*vals: Val, kind: str | None = None, dtype: str | None = None, node: ast.AST | None = None) -> Val:
    vals = tuple(v for v in vals if v is not None)
    if not vals:
        return Val(kind=kind or "unknown", dtype=dtype, node=node)
    if len(vals) == 1 and kind is None and dtype is None and node is None:
        return vals[0]
    origins = frozenset().union(*(v.origins for v in vals))
    cuts = frozenset().union(*(v.cuts for v in vals))
    if kind is None:
        kinds = {v.kind for v in vals}
        kind = kinds.pop() if len(kinds) == 1 else "unknown"
    ref = None
    if kind in CALLABLE_KINDS:  # two different transformed functions (one per branch) are no one of them
        if len({id(v.ref) for v in vals}) == 1 and vals[0].ref is not None:
            ref = vals[0].ref
        else:
            kind = "unknown"
    if dtype is None:
        dtypes = {v.dtype for v in vals}
        dtype = dtypes.pop() if len(dtypes) == 1 else None
    return Val(origins, cuts, kind, dtype, node, None, any(v.traced for v in vals), any(v.jtraced for v in vals), ref)


def flat(val: Val) -> Val:
    """A container seen as one value (its items joined)."""
    if val.items is None:
        return val
    return join(val, *(v for _, v in val.items), kind="unknown")


def const_key(node: ast.AST):
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)) and not isinstance(node.value, bool):
        return node.value
    return None


@dataclass(frozen=True, eq=False)
class FuncRef:
    node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
    cls: ast.ClassDef | None = None
    self_val: Val | None = None  # bound methods
    closure: tuple = ()  # enclosing functions' environments (innermost first)


@dataclass(frozen=True, eq=False)
class ClassInfo:
    node: ast.ClassDef
    bases: tuple[str, ...]
    methods: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)  # attribute -> Val (joined over assignments)


@dataclass
class Frame:
    env: dict
    func: ast.AST | None
    returns: list = field(default_factory=list)
    cls: ClassInfo | None = None
    outers: tuple = ()


class LazyParents:
    """`get(node)` -> parent node; maps only the top-level statement that contains the node."""

    def __init__(self, tree: ast.Module):
        self.tree = tree
        self.starts = []
        for stmt in tree.body:
            first = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
            self.starts.append((first, stmt.end_lineno or stmt.lineno, stmt))
        self.maps: dict = {}

    def _top(self, node):
        line = getattr(node, "lineno", None)
        if line is None:  # withitem, comprehension, arguments: any descendant tells the statement
            line = next((n.lineno for n in ast.walk(node) if hasattr(n, "lineno")), None)
            if line is None:
                return None
        i = bisect.bisect_right([s[0] for s in self.starts], line) - 1
        while i >= 0:
            first, last, stmt = self.starts[i]
            if first <= line <= last:
                return stmt
            i -= 1
        return None

    def get(self, node, default=None):
        if node is self.tree:
            return default
        top = self._top(node)
        if top is None:
            return default
        if node is top:
            return self.tree
        mapping = self.maps.get(id(top))
        if mapping is None:
            mapping = {}
            stack = [top]
            while stack:
                parent = stack.pop()
                for child in ast.iter_child_nodes(parent):
                    mapping[id(child)] = parent
                    stack.append(child)
            self.maps[id(top)] = mapping
        return mapping.get(id(node), default)


class Interp:
    """The generic interpreter; subclasses give it a framework's meaning."""

    framework = ""

    def __init__(self, ctx):
        self.ctx = ctx
        self.names = ctx.names
        self.tree = ctx.tree
        self.module_env: dict = {}
        self.functions: dict[str, ast.AST] = {}
        self.classes: dict[str, ClassInfo] = {}
        self.stack: list = []  # functions being inlined
        self.frames: list[Frame] = []
        self.loop_depth = 0
        self.budget = 4 * len(ctx.source.text) + 2000  # ~40 evaluations per node, linear in the file
        self.memo: dict = {}
        self.evaluated: set = set()  # function nodes evaluated at least once
        for node in self.tree.body:
            self._index_def(node)
        for info in self.classes.values():  # same-file base classes lend their methods
            inherited: dict = {}
            seen = set()
            stack = [b for b in info.bases if b in self.classes]
            while stack:
                base = stack.pop(0)
                if base in seen or base == info.node.name:
                    continue
                seen.add(base)
                for name, fn in self.classes[base].methods.items():
                    inherited.setdefault(name, fn)
                stack.extend(b for b in self.classes[base].bases if b in self.classes)
            for name, fn in inherited.items():
                info.methods.setdefault(name, fn)

    def _index_def(self, node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.functions[node.name] = node
        elif isinstance(node, ast.ClassDef):
            bases = tuple(self.names.qualname(b) or "" for b in node.bases)
            info = ClassInfo(node, bases)
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    info.methods[item.name] = item
            self.classes[node.name] = info
        elif isinstance(node, ast.If):  # defs under `if TYPE_CHECKING`/`if __name__` still count
            for child in node.body + node.orelse:
                self._index_def(child)

    # ----------------------------------------------------------------- driving
    def run(self):
        frame = Frame(self.module_env, None)
        self.frames.append(frame)
        self.exec_block(self.tree.body)
        self.after_module()
        self.frames.pop()
        return self

    def after_module(self):
        """Evaluate what the module body never called, each function once on its own."""
        for _name, fn in list(self.functions.items()):
            if fn not in self.evaluated:
                self.standalone(fn, None)
        for info in self.classes.values():
            for fn in info.methods.values():
                if fn not in self.evaluated:
                    self.standalone(fn, info)

    def standalone(self, fn, cls: ClassInfo | None):
        args = []
        params = self.params(fn)
        for i, name in enumerate(params):
            if i == 0 and cls is not None and name in ("self", "cls"):
                args.append(self.instance_val(cls, None))
            else:
                args.append(self.param_val(fn, name, i))
        self.invoke(FuncRef(fn, cls.node if cls else None), args, {}, standalone=True)

    def param_val(self, fn, name, index) -> Val:
        return UNKNOWN

    def instance_val(self, cls: ClassInfo, node) -> Val:
        return Val(kind="instance", ref=cls, node=node)

    @cached_property
    def parents(self) -> LazyParents:
        """child -> parent, built per top-level statement on first use (few rules look upwards)."""
        return LazyParents(self.tree)

    @property
    def frame(self) -> Frame:
        return self.frames[-1]

    def lookup(self, name: str) -> Val | None:
        frame = self.frame
        val = frame.env.get(name)
        if val is None:
            for env in frame.outers:
                val = env.get(name)
                if val is not None:
                    break
        if val is None and frame.env is not self.module_env:
            val = self.module_env.get(name)
        if val is None:
            if name in self.functions:
                return Val(kind="func", ref=FuncRef(self.functions[name]))
            if name in self.classes:
                return Val(kind="class", ref=self.classes[name])
        return val

    # ----------------------------------------------------------------- statements
    def exec_block(self, stmts):
        for stmt in stmts:
            if self.budget <= 0:
                return
            self.exec_stmt(stmt)

    def exec_stmt(self, node):
        self.budget -= 1
        method = getattr(self, "s_" + type(node).__name__, None)
        if method is not None:
            method(node)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.eval(child)

    def s_Expr(self, node):
        self.eval(node.value)

    def s_Assign(self, node):
        val = self.eval(node.value)
        for target in node.targets:
            self.bind(target, val, node)

    def s_AnnAssign(self, node):
        if node.value is not None:
            self.bind(node.target, self.eval(node.value), node)

    def s_AugAssign(self, node):
        val = self.eval(node.value)
        if isinstance(node.target, ast.Subscript):
            base = self.eval(node.target.value)
            self.on_subscript_store(node, node.target, base, val)
            return
        old = self.eval(node.target)
        self.bind(node.target, self.binop(old, val, node), node, aug=True)

    def s_Return(self, node):
        self.frame.returns.append(self.eval(node.value) if node.value is not None else Val(kind="none"))

    def s_If(self, node):
        test = self.eval(node.test)
        self.on_test(node.test, test)
        self.branch(node.body, node.orelse)

    def branch(self, body, orelse):
        env = self.frame.env
        before = dict(env)
        self.exec_block(body)
        after_body = dict(env)
        env.clear()
        env.update(before)
        self.exec_block(orelse)
        for key, val in after_body.items():
            other = env.get(key)
            if other is None:
                env[key] = val
            elif other is not val:
                env[key] = self.merge(val, other)

    def merge(self, a: Val, b: Val) -> Val:
        if a == b:
            return a
        if a.kind == b.kind and a.ref is b.ref and a.ref is not None:
            return replace(a, origins=a.origins | b.origins, cuts=a.cuts | b.cuts)
        return join(a, b)

    def s_For(self, node):
        it = self.eval(node.iter)
        self.bind(node.target, self.element(it, node.iter), node)
        self.loop_depth += 1
        self.exec_block(node.body)
        self.loop_depth -= 1
        self.exec_block(node.orelse)

    s_AsyncFor = s_For

    def s_While(self, node):
        test = self.eval(node.test)
        self.on_test(node.test, test)
        self.loop_depth += 1
        self.exec_block(node.body)
        self.loop_depth -= 1
        self.exec_block(node.orelse)

    def s_With(self, node):
        exits = []
        for item in node.items:
            val = self.eval(item.context_expr)
            entered = self.with_enter(item, val)
            exits.append(entered)
            if item.optional_vars is not None:
                self.bind(item.optional_vars, entered if entered is not None else val, node)
        self.exec_block(node.body)
        for entered in reversed(exits):
            self.with_exit(entered)

    s_AsyncWith = s_With

    def with_enter(self, item, val):
        return None

    def with_exit(self, entered):
        pass

    def s_Try(self, node):
        self.exec_block(node.body)
        for handler in node.handlers:
            self.exec_block(handler.body)
        self.exec_block(node.orelse)
        self.exec_block(node.finalbody)

    s_TryStar = s_Try

    def s_FunctionDef(self, node):
        val = Val(kind="func", ref=FuncRef(node, closure=self.closure()))
        for dec in reversed(node.decorator_list):
            val = self.decorate(dec, val)
        self.frame.env[node.name] = val

    s_AsyncFunctionDef = s_FunctionDef

    CUSTOM_GRADIENT = ("tensorflow.custom_gradient", "jax.custom_vjp", "jax.custom_jvp", "torch.autograd.Function")

    def decorate(self, dec, val: Val) -> Val:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if (self.names.qualname(target) or "") in self.CUSTOM_GRADIENT:
            return Val(kind="opaque_grad", ref=val)  # its own derivative: differentiable, never a cut
        return val

    def s_ClassDef(self, node):
        pass

    def s_Delete(self, node):
        for target in node.targets:
            if isinstance(target, ast.Name):
                self.on_delete(target.id)

    def on_delete(self, name):
        pass

    def s_Import(self, node):
        pass

    s_ImportFrom = s_Import

    # ----------------------------------------------------------------- binding
    def bind(self, target, val: Val, stmt, aug=False):
        if isinstance(target, ast.Name):
            self.on_bind_name(target.id, val, stmt)
            self.frame.env[target.id] = val
        elif isinstance(target, (ast.Tuple, ast.List)):
            elts = target.elts
            star = next((i for i, e in enumerate(elts) if isinstance(e, ast.Starred)), None)
            for i, elt in enumerate(elts):
                if isinstance(elt, ast.Starred):
                    self.bind(elt.value, flat(val), stmt)
                    continue
                key = i if star is None or i < star else i - len(elts)
                self.bind(elt, self.unpack(val, key, len(elts)), stmt)
        elif isinstance(target, ast.Attribute):
            base = self.eval(target.value)
            self.on_attr_store(target, base, val, stmt)
        elif isinstance(target, ast.Subscript):
            base = self.eval(target.value)
            if not aug:
                self.on_subscript_store(stmt, target, base, val)
        elif isinstance(target, ast.Starred):
            self.bind(target.value, val, stmt)

    def unpack(self, val: Val, key: int, n: int) -> Val:
        if val.items is not None:
            keys = [k for k, _ in val.items]
            if key < 0:
                key = len(keys) + key
            if 0 <= key < len(keys) and keys[key] == key:
                return val.items[key][1]
            return flat(val)
        return self.refine(val, key)

    def refine(self, val: Val, key) -> Val:
        """A part of a value: differentiated arguments name their pytree parts."""
        if val.refinable and key is not None:
            return replace(val, origins=frozenset(f"{o}.{key}" for o in val.origins), node=None)
        return replace(val, items=None) if val.items is not None else val

    def on_bind_name(self, name, val, stmt):
        pass

    def on_attr_store(self, target, base: Val, val: Val, stmt):
        if base.kind == "instance" and isinstance(base.ref, ClassInfo):
            attrs = base.ref.attrs
            old = attrs.get(target.attr)
            attrs[target.attr] = val if old is None or old == val else self.merge(old, val)

    def on_subscript_store(self, stmt, target, base: Val, val: Val):
        if isinstance(target.value, ast.Name) and base.items is not None:
            key = const_key(target.slice)
            if key is not None:
                items = tuple((k, v) for k, v in base.items if k != key) + ((key, val),)
                self.frame.env[target.value.id] = replace(base, items=items, origins=base.origins | val.origins,
                                                          cuts=base.cuts | val.cuts)

    def element(self, it: Val, node) -> Val:
        """An element of an iterable (loop variable)."""
        if it.items is not None:
            return flat(replace(it, origins=EMPTY, cuts=EMPTY)) if it.items else UNKNOWN
        if it.kind in ("range", "static", "str"):
            return Val(kind="pyint" if it.kind == "range" else "unknown", dtype="int" if it.kind == "range" else None)
        return replace(it, node=None, ref=None) if it.kind != "func" else UNKNOWN

    # ----------------------------------------------------------------- expressions
    def eval(self, node) -> Val:
        if node is None:
            return UNKNOWN
        self.budget -= 1
        method = getattr(self, "e_" + type(node).__name__, None)
        if method is None:
            vals = [self.eval(c) for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr)]
            return join(*vals) if vals else UNKNOWN
        return method(node)

    def e_Constant(self, node):
        v = node.value
        if isinstance(v, bool):
            return Val(kind="pybool", dtype="bool", node=node)
        if isinstance(v, int):
            return Val(kind="pyint", dtype="int", node=node)
        if isinstance(v, float):
            return Val(kind="pyfloat", dtype="float", node=node)
        if v is None:
            return Val(kind="none", node=node)
        if isinstance(v, str):
            return Val(kind="str", node=node)
        return Val(node=node)

    def e_Name(self, node):
        val = self.lookup(node.id)
        if val is not None:
            return val
        return Val(kind="global", ref=self.names.qualname(node))

    def e_Attribute(self, node):
        base = self.eval(node.value)
        return self.attribute(node, base)

    def attribute(self, node, base: Val) -> Val:
        if base.kind == "instance" and isinstance(base.ref, ClassInfo):
            val = base.ref.attrs.get(node.attr)
            if val is not None:
                return val
            method = base.ref.methods.get(node.attr)
            if method is not None:
                if any(isinstance(d, ast.Name) and d.id == "property" for d in method.decorator_list):
                    return self.invoke(FuncRef(method, base.ref.node, base), [base], {})
                return Val(kind="func", ref=FuncRef(method, base.ref.node, base))
            return Val(base.origins, base.cuts, "method", None, None, None, base.traced, base.jtraced,
                       ("method", node.attr, base))
        if base.kind == "global" and isinstance(base.ref, str):
            return Val(kind="global", ref=f"{base.ref}.{node.attr}")
        if base.kind == "class" and isinstance(base.ref, ClassInfo):
            method = base.ref.methods.get(node.attr)
            if method is not None:
                return Val(kind="func", ref=FuncRef(method, base.ref.node))
            return UNKNOWN
        if node.attr in STATIC_ATTRS:
            return Val(kind="static", cuts=base.cuts)
        if node.attr in ("T", "mT", "real") and base.kind in ("jarray", "numpy", "tensor"):
            return replace(base, items=None, ref=None)
        return Val(base.origins, base.cuts, "method", base.dtype, None, None, base.traced, base.jtraced, ("method", node.attr, base))

    def e_Subscript(self, node):
        base = self.eval(node.value)
        index = self.eval(node.slice)
        key = const_key(node.slice)
        if base.items is not None and key is not None:
            item = base.item(key)
            if item is not None:
                return item
        if base.kind == "static":
            return Val(kind="static", cuts=base.cuts)
        val = self.refine(base, key if isinstance(key, str) else None)
        if base.refinable and not isinstance(key, str):
            val = replace(base, node=None)
        return Val(val.origins, val.cuts | index.cuts, self.index_kind(val), val.dtype, None, None,
                   val.traced, val.jtraced, None, val.refinable and isinstance(key, str))

    def index_kind(self, val: Val) -> str:
        return val.kind if val.kind not in ("var", "module", "instance", "func", "varlist") else "tensor"

    def e_Slice(self, node):
        return join(*(self.eval(p) for p in (node.lower, node.upper, node.step) if p is not None), kind="static")

    def e_Tuple(self, node):
        vals = [self.eval(e) for e in node.elts]
        if any(isinstance(e, ast.Starred) for e in node.elts):
            return join(*vals, kind="seq")
        return Val(frozenset().union(*(v.origins for v in vals)) if vals else EMPTY,
                   frozenset().union(*(v.cuts for v in vals)) if vals else EMPTY,
                   "seq", None, node, tuple(enumerate(vals)))

    e_List = e_Tuple

    def e_Set(self, node):
        return join(*(self.eval(e) for e in node.elts), kind="seq")

    def e_Dict(self, node):
        items = []
        vals = []
        for k, v in zip(node.keys, node.values):
            val = self.eval(v)
            vals.append(val)
            key = const_key(k) if k is not None else None
            if key is not None:
                items.append((key, val))
            elif k is None:
                items.extend(val.items or ())
        return Val(frozenset().union(*(v.origins for v in vals)) if vals else EMPTY,
                   frozenset().union(*(v.cuts for v in vals)) if vals else EMPTY,
                   "dict", None, node, tuple(items))

    def e_Starred(self, node):
        return flat(self.eval(node.value))

    def e_BinOp(self, node):
        return self.binop(self.eval(node.left), self.eval(node.right), node)

    def binop(self, a: Val, b: Val, node) -> Val:
        a, b = flat(a), flat(b)
        kinds = {a.kind, b.kind}
        if kinds <= {"pyint", "pyfloat", "pybool"}:
            kind = "pyfloat" if "pyfloat" in kinds else "pyint"
        else:
            kind = self.arith_kind(a, b)
        if a.dtype == b.dtype:
            dtype = a.dtype
        elif {a.dtype, b.dtype} <= {"int", "bool"}:
            dtype = "int"
        elif "float" in (a.dtype, b.dtype) and None not in (a.dtype, b.dtype):
            dtype = "float"
        else:
            dtype = None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            dtype = "float" if dtype in ("int", "bool", "float") else dtype
        return Val(a.origins | b.origins, a.cuts | b.cuts, kind, dtype, None, None,
                   a.traced or b.traced, a.jtraced or b.jtraced)

    def arith_kind(self, a: Val, b: Val) -> str:
        for k in ("tensor", "jarray", "numpy"):
            if k in (a.kind, b.kind):
                return k
        return "unknown"

    def e_UnaryOp(self, node):
        val = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            self.on_test(node.operand, val)
            return Val(kind="pybool", dtype="bool", cuts=val.cuts)
        return replace(val, node=node, items=None, ref=None)

    def e_BoolOp(self, node):
        vals = [self.eval(v) for v in node.values]
        for sub, val in zip(node.values[:-1], vals[:-1]):
            self.on_test(sub, val)
        return join(*vals)

    def e_Compare(self, node):
        vals = [self.eval(node.left)] + [self.eval(c) for c in node.comparators]
        self.on_compare(node, vals)
        base = join(*vals)
        if all(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops):  # identity is never traced
            return Val(kind="pybool", dtype="bool", cuts=base.cuts)
        # a comparison has no gradient of its own: a mask is data, not a cut
        # no derivative: under grad alone the result is concrete, only an abstract (jit) trace stays abstract
        return Val(EMPTY, base.cuts, self.arith_kind(*vals[:2]) if len(vals) > 1 else "unknown", "bool",
                   None, None, base.jtraced, base.jtraced)

    def e_IfExp(self, node):
        test = self.eval(node.test)
        self.on_test(node.test, test)
        return join(self.eval(node.body), self.eval(node.orelse))

    def e_Lambda(self, node):
        return Val(kind="func", ref=FuncRef(node, closure=self.closure()))

    def closure(self) -> tuple:
        frame = self.frame
        if frame.env is self.module_env:
            return ()
        return (frame.env,) + frame.outers

    def e_NamedExpr(self, node):
        val = self.eval(node.value)
        self.bind(node.target, val, node)
        return val

    def _comprehension(self, node, elts):
        saved = dict(self.frame.env)
        for gen in node.generators:
            it = self.eval(gen.iter)
            self.bind(gen.target, self.element(it, gen.iter), node)
            for cond in gen.ifs:
                self.on_test(cond, self.eval(cond))
        vals = [self.eval(e) for e in elts]
        self.frame.env.clear()
        self.frame.env.update(saved)
        return vals

    def e_ListComp(self, node):
        return join(*self._comprehension(node, [node.elt]), kind="seq")

    e_SetComp = e_ListComp
    e_GeneratorExp = e_ListComp

    def e_DictComp(self, node):
        return join(*self._comprehension(node, [node.key, node.value]), kind="dict")

    def e_JoinedStr(self, node):
        for v in node.values:
            self.eval(v)
        return Val(kind="str")

    def e_FormattedValue(self, node):
        self.eval(node.value)
        return Val(kind="str")

    def e_Await(self, node):
        return self.eval(node.value)

    def e_Call(self, node):
        func = self.eval(node.func)
        args = [self.eval(a) for a in node.args]
        kwargs = {k.arg: self.eval(k.value) for k in node.keywords}
        qual = self.names.qualname(node.func)
        result = self.call(node, qual, func, args, kwargs)
        return result if result is not None else self.default_call(node, qual, func, args, kwargs)

    def call(self, node, qual, func: Val, args, kwargs) -> Val | None:
        """Framework semantics; None falls back to `default_call`."""
        return None

    def default_call(self, node, qual, func: Val, args, kwargs) -> Val:
        if func.kind == "func" and isinstance(func.ref, FuncRef):
            ref = func.ref
            pos = ([ref.self_val] if ref.self_val is not None else []) + args
            return self.invoke(ref, pos, kwargs, call_node=node)
        if func.kind == "class" and isinstance(func.ref, ClassInfo):
            inst = self.instance_val(func.ref, node)
            init = func.ref.methods.get("__init__")
            if init is not None:
                self.invoke(FuncRef(init, func.ref.node, inst), [inst] + args, kwargs, call_node=node)
            return inst
        if func.kind == "instance" and isinstance(func.ref, ClassInfo):
            method = func.ref.methods.get("__call__") or func.ref.methods.get("call") or func.ref.methods.get("forward")
            if method is not None:
                out = self.invoke(FuncRef(method, func.ref.node, func), [func] + args, kwargs, call_node=node)
                return replace(out, origins=out.origins | func.origins) if func.origins else out
        if func.kind == "opaque_grad":
            vals = [flat(a) for a in args] + [flat(v) for v in kwargs.values()]
            out = join(*vals) if vals else Val()
            return Val(out.origins, EMPTY, "tensor" if out.kind == "tensor" else "jarray" if out.kind == "jarray"
                       else "unknown", out.dtype, node, None, out.traced, out.jtraced)
        if qual in ("range",):
            return Val(kind="range", cuts=join(*args).cuts if args else EMPTY)
        if qual in ("len",):
            return Val(kind="pyint", dtype="int")
        if qual in ("zip", "enumerate", "reversed", "list", "tuple", "sorted") and args:
            if qual in ("list", "tuple") and len(args) == 1 and args[0].items is not None:
                return args[0]
            return join(*args, kind="seq") if qual != "zip" else Val(kind="zip", ref=tuple(args),
                                                                    origins=join(*args).origins)
        if qual in ("isinstance", "hasattr", "callable", "print", "str", "repr", "type", "id"):
            return Val(kind="pybool" if qual in ("isinstance", "hasattr", "callable") else "unknown")
        vals = [flat(a) for a in args] + [flat(v) for v in kwargs.values()]
        if func.kind == "method" and isinstance(func.ref, tuple):
            vals.append(flat(func.ref[2]))
        elif func.origins:
            vals.append(func)
        if not vals:
            return Val(kind="unknown")
        out = join(*vals, kind="unknown")
        if func.kind == "method" and isinstance(func.ref, tuple) and func.ref[2].kind in ("tensor", "jarray") \
                and func.ref[1] not in ("tolist", "item", "numpy", "__array__"):
            out = replace(out, kind=func.ref[2].kind)  # x.reshape(...), x.sum(): still an array
        return out

    # ----------------------------------------------------------------- inlining
    def params(self, fn) -> list[str]:
        a = fn.args
        return [p.arg for p in a.posonlyargs + a.args]

    def invoke(self, ref: FuncRef, args: list, kwargs: dict, *, call_node=None, standalone=False,
               extra: tuple = ()) -> Val:
        fn = ref.node
        if fn in self.stack or len(self.stack) >= MAX_DEPTH or self.budget <= 0:
            return join(*(flat(a) for a in args), kind="unknown") if args else UNKNOWN
        key = (fn, tuple(args), tuple(sorted(kwargs.items(), key=lambda kv: str(kv[0]))), self.context_key(), extra,
               tuple(id(e) for e in ref.closure))
        try:
            cached = self.memo.get(key)
        except TypeError:
            cached, key = None, None
        if cached is not None:
            return cached
        self.evaluated.add(fn)
        env: dict = {}
        a = fn.args
        positional = a.posonlyargs + a.args
        for i, p in enumerate(positional):
            if i < len(args):
                env[p.arg] = args[i]
            elif p.arg in kwargs:
                env[p.arg] = kwargs[p.arg]
            else:
                default_index = i - (len(positional) - len(a.defaults))
                if 0 <= default_index < len(a.defaults):
                    env[p.arg] = self.eval(a.defaults[default_index])
                else:
                    env[p.arg] = self.param_val(fn, p.arg, i) if standalone else UNKNOWN
        if a.vararg is not None:
            rest = args[len(positional):]
            env[a.vararg.arg] = Val(kind="seq", items=tuple(enumerate(rest))) if rest else Val(kind="seq", items=())
        for p, d in zip(a.kwonlyargs, a.kw_defaults):
            env[p.arg] = kwargs.get(p.arg) or (self.eval(d) if d is not None else UNKNOWN)
        if a.kwarg is not None:
            env[a.kwarg.arg] = Val(kind="dict")
        cls = self.classes.get(ref.cls.name) if ref.cls is not None else None
        frame = Frame(env, fn, cls=cls, outers=ref.closure)
        self.stack.append(fn)
        self.frames.append(frame)
        saved_loop = self.loop_depth
        self.loop_depth = 0
        try:
            self.enter_function(fn, frame, args, kwargs, extra)
            if isinstance(fn, ast.Lambda):
                frame.returns.append(self.eval(fn.body))
            else:
                self.exec_block(fn.body)
            result = join(*frame.returns) if frame.returns else Val(kind="none")
            if len(frame.returns) > 1 and all(r.items is not None for r in frame.returns):
                result = frame.returns[-1] if len({len(r.items) for r in frame.returns}) > 1 else \
                    replace(frame.returns[0], items=tuple(
                        (k, join(*(r.items[i][1] for r in frame.returns))) for i, (k, _) in
                        enumerate(frame.returns[0].items)), origins=result.origins, cuts=result.cuts)
            self.leave_function(fn, frame, result, extra)
        finally:
            self.loop_depth = saved_loop
            self.frames.pop()
            self.stack.pop()
        if key is not None:
            self.memo[key] = result
        return result

    def context_key(self):
        return ()

    def enter_function(self, fn, frame, args, kwargs, extra):
        pass

    def leave_function(self, fn, frame, result, extra):
        pass

    # ----------------------------------------------------------------- hooks
    def on_test(self, node, val: Val):
        pass

    def on_compare(self, node, vals: list):
        """The operands of a comparison (whose result carries no gradient)."""

    # ----------------------------------------------------------------- helpers
    def enclosing(self, node, types) -> ast.AST | None:
        cur = self.parents.get(node)
        while cur is not None and not isinstance(cur, types):
            cur = self.parents.get(cur)
        return cur


def covered(origin: str, live: frozenset) -> bool:
    """Is `origin` (e.g. "params.w1") still reached by the live origins ("params", "params.w1.0")?"""
    if origin in live:
        return True
    parts = origin.split(".")
    for i in range(1, len(parts)):
        if ".".join(parts[:i]) in live:
            return True
    prefix = origin + "."
    return any(o.startswith(prefix) for o in live)
