"""What the TensorFlow and JAX plug-ins share: which values each answers for, how a function nothing calls is
run on its own, and what they read the same way from the source (a call's argument by keyword or position,
the class of a dtype such as `tf.int32`, `"float32"` or `jnp.bfloat16`, the dtype a literal gets)."""

from __future__ import annotations

import ast
import bisect
from functools import cached_property

from gradtrace.analysis.core.frames import FunctionRef
from gradtrace.analysis.core.plugin import Plugin
from gradtrace.analysis.core.values import UNKNOWN, Value, combine, expr_text


class FrameworkPlugin(Plugin):
    """A plug-in that answers for its framework's values (`fw` is its name, or one of its own `kinds`) and,
    when no other framework shares the file, for every value that belongs to no framework."""

    kinds: frozenset = frozenset()

    def __init__(self, interp):
        super().__init__(interp)
        self.scope_indexes: dict = {}  # module path -> ScopeIndex
        self.own_pass = False  # analysing what nothing called, with this plug-in's meaning for parameters

    @cached_property
    def exclusive(self) -> bool:
        return len(self.interp.plugins) == 1

    def claims(self, value: Value) -> bool:
        if value.fw is not None:
            return value.fw == self.name
        return value.kind in self.kinds or self.exclusive

    def run_on_its_own(self, func: FunctionRef, self_value: Value | None, parameter) -> object:
        """Run a function nothing called with `self_value` for a method's first parameter and `parameter(name)`
        for the others (what callers may pass)."""
        a = func.node.args
        names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
        env = {name: parameter(name) for name in names}
        env.update({p.arg: UNKNOWN for p in (a.vararg, a.kwarg) if p is not None})
        if self_value is not None and names:
            env[names[0]] = self_value
        return self.interp.run_standalone(func, env, self_value)

    def scopes(self, module) -> ScopeIndex:
        """The node index of a file the run reads (this file, or a project module it imports)."""
        found = self.scope_indexes.get(module.path)
        if found is None:
            found = self.scope_indexes[module.path] = ScopeIndex(module.source)
        return found

    def after_module(self) -> None:
        """Analyse what nothing called. Plug-ins that give a function's parameters meanings of their own in
        their own such pass (PyTorch: a model-like name is a model) run it again there, and their events from
        this pass are left to theirs."""
        before = set(self.interp.analysed)
        self.own_pass = True
        try:
            self.analyse_uncalled()
        finally:
            self.own_pass = False
            if self.others_with_own_pass:
                self.interp.analysed -= self.interp.analysed - before

    def analyse_uncalled(self) -> None:
        pass

    def relevant_functions(self) -> list:
        """(function, class or None) of the file's functions and methods that name this plug-in's framework, or
        call (by name) one that does: only they can show something when analysed on their own."""
        module = self.interp.root
        fns = [(fn, None) for fn in module.functions.values()] + [
            (m, info) for info in module.classes.values() for m in info.methods.values()]
        names = module.names
        framework_names = {local for local, qualified in names.aliases.items() if qualified.split(".")[0] in self.roots}
        if not framework_names or not fns:
            return []
        source = module.source
        spans = sorted((min([fn.lineno] + [d.lineno for d in fn.decorator_list]), fn.end_lineno or fn.lineno, i)
                       for i, (fn, _) in enumerate(fns))
        starts = [span[0] for span in spans]

        def owner(line: int) -> int | None:
            k = bisect.bisect_right(starts, line) - 1
            return spans[k][2] if k >= 0 and line <= spans[k][1] else None

        relevant: set[int] = set()
        for node in source.nodes(ast.Name):
            if node.id in framework_names:
                k = owner(node.lineno)
                if k is not None:
                    relevant.add(k)
        calls: dict[int, set[str]] = {}
        for node in source.nodes(ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            k = owner(node.lineno) if name is not None else None
            if k is not None:
                calls.setdefault(k, set()).add(name)
        while True:
            using = {fns[k][0].name for k in relevant}
            more = {k for k, called in calls.items() if k not in relevant and called & using}
            if not more:
                break
            relevant |= more
        return [fns[k] for k in sorted(relevant)]

    def emit(self, event, frame):
        if self.own_pass and not frame.summarising and type(event).__module__.startswith(self.others_with_own_pass):
            return None
        return event

    @cached_property
    def others_with_own_pass(self) -> tuple:
        """The event modules of the plug-ins of the run that are not of this kind."""
        return tuple(f"gradtrace.analysis.frameworks.{p.name}." for p in self.interp.plugins
                     if not isinstance(p, FrameworkPlugin))


INT_DTYPES = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool", "string"})


def call_argument(node: ast.Call, name: str, position: int | None = None) -> ast.AST | None:
    """The expression passed as `name=` or at `position` (not after a `*args`), else None."""
    for k in node.keywords:
        if k.arg == name:
            return k.value
    if position is not None and len(node.args) > position and not any(
            isinstance(a, ast.Starred) for a in node.args[: position + 1]):
        return node.args[position]
    return None


def dtype_of(node: ast.AST | None, names) -> str | None:
    """`tf.int32`, "int64", `np.float32` -> "int" / "float" / None (unknown)."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    else:
        text = (names.qualname(node) or "").rsplit(".", 1)[-1]
    if text in INT_DTYPES or text == "int":
        return "int"
    if text.startswith(("float", "bfloat", "complex", "half", "double")) or text == "float":
        return "float"
    return None


def literal_dtype(node: ast.AST | None) -> str | None:
    """The dtype a framework infers from a literal initial value: ints -> "int", any float -> "float"."""
    if node is None:
        return None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return literal_dtype(node.operand)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (bool, int)):
            return "int"
        if isinstance(node.value, float):
            return "float"
        return None
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        kinds = {literal_dtype(e) for e in node.elts}
        if kinds == {"int"}:
            return "int"
        if "float" in kinds and None not in kinds:
            return "float"
    # a list built from literals keeps their dtype: `[0] * n`, `[0, 0] + [1]`, `[0, 0, 0][:n]`, `[0 for _ in xs]`
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        lists = [side for side in (node.left, node.right) if isinstance(side, (ast.List, ast.Tuple))]
        return literal_dtype(lists[0]) if len(lists) == 1 else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and all(
            isinstance(side, (ast.List, ast.Tuple)) for side in (node.left, node.right)):
        kinds = {literal_dtype(node.left), literal_dtype(node.right)}
        return kinds.pop() if len(kinds) == 1 else ("float" if kinds == {"int", "float"} else None)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
        return literal_dtype(node.value)
    if isinstance(node, ast.ListComp) and isinstance(node.elt, (ast.Constant, ast.UnaryOp)):
        return literal_dtype(node.elt)
    return None


FUNCTION_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def custom_derivative_call(args: list, kwargs: dict) -> Value:
    """A call of a function with a derivative of its own (`@tf.custom_gradient`, `@jax.custom_vjp`): whatever its
    body does, what it returns is differentiable with respect to its inputs, and never a cut of its own (what cut
    its inputs before the call stays cut)."""
    out = combine("unknown", *args, *kwargs.values())
    kind = out.kind if out.kind == "tensor" else "unknown"
    return Value(kind, srcs=out.srcs, cuts=out.cuts, dtype=out.dtype, fw=out.fw, traced=out.traced,
                 jtraced=out.jtraced, deps=out.deps)


def binop_dtype(op: ast.operator, a: str | None, b: str | None) -> str | None:
    """The dtype class of `a <op> b` (true division of integers is float)."""
    if a == b:
        dtype = a
    elif {a, b} <= {"int", "bool"}:
        dtype = "int"
    elif "float" in (a, b) and None not in (a, b):
        dtype = "float"
    else:
        dtype = None
    if isinstance(op, ast.Div) and dtype in ("int", "bool", "float"):
        dtype = "float"
    return dtype


def in_file(source):
    """A test of whether a node belongs to `source`'s tree (facts from imported project modules are not
    reported against the file being checked); the file's nodes are listed on the first question."""
    ids: set = set()

    def local(node: ast.AST) -> bool:
        if not ids:
            ids.update(id(n) for bucket in source.index.values() for n in bucket)
        return id(node) in ids

    return local


def joined_dtype(*values: Value) -> str | None:
    """The dtype class every value agrees on, else None (a list or tuple, like a shape, says nothing)."""
    dtypes = {v.dtype if v.items is None else None for v in values}
    return dtypes.pop() if len(dtypes) == 1 else None


class ScopeIndex:
    """A file's nodes by kind in source order, to find those inside a scope (a function, a loop, a `with` block)
    by bisection instead of walking it."""

    def __init__(self, source):
        self.source = source
        self.ordered: dict = {}  # kind, or a named selection of nodes -> (positions, nodes)

    def within(self, kinds, scope: ast.AST) -> list:
        out = []
        for kind in kinds if isinstance(kinds, tuple) else (kinds,):
            out.extend(self.selected(kind, scope))
        return out

    def selected(self, key, scope: ast.AST, choose=None) -> list:
        """The nodes of `key` (a node kind; or a name for the calls `choose` accepts) inside `scope`."""
        if choose is None:
            positions, nodes = self.sorted_nodes(key)
        else:
            found = self.ordered.get(key)
            if found is None:
                chosen = sorted((n for n in self.source.nodes(ast.Call) if choose(n)), key=position)
                found = self.ordered[key] = ([position(n) for n in chosen], chosen)
            positions, nodes = found
        start, end = position(scope), end_position(scope)
        out = []
        for i in range(bisect.bisect_left(positions, start), len(nodes)):
            if positions[i] > end:
                break
            if end_position(nodes[i]) <= end:
                out.append(nodes[i])
        return out

    def enclosing(self, node: ast.AST, kinds: tuple) -> ast.AST | None:
        """The innermost node of one of `kinds` around `node` (the file's module when `ast.Module` is one of
        them and nothing nearer is), by position: no parent map of the whole file."""
        best = None
        start, end = position(node), end_position(node)
        for kind in kinds:
            if kind is ast.Module:
                continue
            positions, nodes = self.sorted_nodes(kind)
            for i in range(bisect.bisect_right(positions, start) - 1, -1, -1):
                candidate = nodes[i]
                if candidate is not node and end <= end_position(candidate):
                    if best is None or position(best) < positions[i]:
                        best = candidate
                    break
        if best is None and ast.Module in kinds:
            return self.source.tree
        return best

    def expects_error(self, node: ast.AST) -> bool:
        """Does `node` run where an exception is expected: inside `with self.assertRaises(...)` /
        `pytest.raises(...)`, or in the body of a `try` that handles exceptions (in its own function)?"""
        current = self.enclosing(node, EXPECTING + DEFINITIONS)
        while current is not None and not isinstance(current, DEFINITIONS):
            if isinstance(current, ast.Try) and current.handlers and current.body and position(
                    current.body[0]) <= position(node) and end_position(node) <= end_position(current.body[-1]):
                return True
            if isinstance(current, (ast.With, ast.AsyncWith)) and any(
                    raises_context(item.context_expr) for item in current.items):
                return True
            current = self.enclosing(current, EXPECTING + DEFINITIONS)
        return False

    def contains(self, outer: ast.AST, node: ast.AST) -> bool:
        return outer is node or (position(outer) <= position(node) and end_position(node) <= end_position(outer))

    def sorted_nodes(self, kind) -> tuple:
        found = self.ordered.get(kind)
        if found is None:
            nodes = sorted(self.source.nodes(kind), key=position)
            found = self.ordered[kind] = ([position(n) for n in nodes], nodes)
        return found

    def assignments_to(self, name: str, scope: ast.AST, own_scope_only: bool = False) -> list:
        """Assignments in `scope` whose targets bind `name` (also inside nested functions unless
        `own_scope_only`)."""
        nested = [d for d in self.within(DEFINITIONS, scope) if d is not scope] if own_scope_only else []
        found = []
        for stmt in self.within(ASSIGNMENTS, scope):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if not any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)):
                continue
            if not any(position(d) <= position(stmt) and end_position(stmt) <= end_position(d) for d in nested):
                found.append(stmt)
        return found


ASSIGNMENTS = (ast.Assign, ast.AnnAssign, ast.AugAssign)
EXPECTING = (ast.Try, ast.With, ast.AsyncWith)


def raises_context(expr: ast.AST) -> bool:
    """`self.assertRaises(...)`, `self.assertRaisesRegex(...)`, `pytest.raises(...)`."""
    func = expr.func if isinstance(expr, ast.Call) else None
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name.startswith("assertRaises") or name == "raises"
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def position(node: ast.AST) -> tuple:
    return (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))


def end_position(node: ast.AST) -> tuple:
    if isinstance(node, ast.Module):
        return (10 ** 9, 0)
    return (getattr(node, "end_lineno", None) or getattr(node, "lineno", 0), getattr(node, "end_col_offset", 0) or 0)


COMPARE_SYMBOLS = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!="}


def compare_text(node: ast.Compare) -> str:
    """`a > 0.5` as written when short, else `... > 0.5`: the comparison itself, not its operand."""
    whole = expr_text(node)
    if whole and not whole.endswith("..."):
        return whole
    parts = [f"{COMPARE_SYMBOLS.get(type(op), '?')} {expr_text(c)}" for op, c in zip(node.ops, node.comparators)]
    return "... " + " ".join(parts)


# Names of models and layers meant to stay as they are while another one trains (a distillation teacher, an EMA or
# target copy, a perceptual-loss network): used in a loss without being trained, on purpose
FROZEN_NAME_HINTS = ("target", "teacher", "ema", "momentum", "frozen", "fixed", "old", "ref", "prior",
                     "avg", "average", "shadow", "vgg", "lpips", "perceptual", "inception",
                     "base_layer")  # the frozen layer an adapter (LoRA, DoRA) wraps


def self_cancelling(node) -> str | None:
    """`x - x` (the same name or attribute path on both sides): "`x - x`", else None. Its gradient is exactly zero
    (a straight-through estimator written without `stop_gradient` on one side)."""
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub)):
        return None
    left, right = node.left, node.right
    if isinstance(left, (ast.Name, ast.Attribute)) and ast.dump(left) == ast.dump(right):
        text = ast.unparse(left)
        return f"{text} - {text}"
    return None
