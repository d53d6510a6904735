"""Function summaries: analyse a function once per argument shape, reuse it at every call site.

A function is interpreted with *symbolic* arguments: argument `i` becomes a value of the same shape (kind,
class, dtype, containers...) whose sources are named `$i` (`$i.fc` for an attribute, `$i.w1` for a part of a
pytree or container). What the body computes — its return value, the events it records (sinks, optimizer
steps, in-place writes...) and what it does to its arguments (attributes set, lists grown) — is the summary.

At a call site the summary is *instantiated*: every symbolic name is replaced by what the caller's argument
carries (`$0.fc` with `model` -> `model.fc`; `$1` with a tensor carrying `W` -> `W`), and the cuts an
argument already carried reach the result when the result depends on it. Two call sites with arguments of
the same shape share one analysis, so the cost of a program is the number of distinct (function, shape)
pairs, not the number of paths through its calls.
"""

from __future__ import annotations

import ast
import functools

from gradtrace import records
from gradtrace.analysis.core.values import EMPTY, Cut, Value, dedup_cuts, flat, is_symbolic
from gradtrace.records import field, record, replace

TYPE_CHECKING = False  # `typing` is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

MAX_SHAPE_ITEMS = 8


@record
class Summary:
    result: Value
    roots: list = field(default_factory=list)  # the symbolic name of each parameter, in order
    events: list = field(default_factory=list)
    # (parameter index, dotted attribute path or "") -> value at the end of the function
    effects: dict = field(default_factory=dict)
    # (parameter index, dotted attribute path or "") -> the layer that saved that argument for backward
    saved: dict = field(default_factory=dict)
    # framework-specific state handed back to the caller (e.g. a grad mode switched off for good)
    state: dict = field(default_factory=dict)
    incomplete: bool = False


class SummaryCache(dict):
    """Summary key -> Summary, and how many summaries each function has (for widening)."""

    def __init__(self):
        super().__init__()
        self.shapes: dict[int, int] = {}  # id(function node) -> summaries made for it

    def add(self, key, function_id: int, summary: Summary) -> None:
        if key not in self:
            self.shapes[function_id] = self.shapes.get(function_id, 0) + 1
        self[key] = summary


CONFIGURATION_KINDS = frozenset({"number", "str", "none", "unknown", "class", "function", "external", "builtin",
                                 "partial"})


def _configuration(value: Value, depth: int = 0) -> bool:
    """A value that only configures (numbers, strings, flags, classes, callables, containers of them)."""
    if value.srcs:
        return False
    if value.items is not None:
        return depth < 3 and value.kind in ("dict", "container") and all(
            _configuration(i, depth + 1) for i in value.items)
    return value.kind in CONFIGURATION_KINDS


def widened(value: Value) -> Value:
    """A container of configuration values taken in bulk: its items are no longer told apart; a string
    literal is just a string (a model zoo's entry points each naming their variant share one summary)."""
    if value.kind == "str" and value.extra:
        return unlettered(value)
    if value.items is None or not _configuration(value):
        return value
    return replace(value, items=None, keys=None)


def literal_parameters(fn: ast.AST) -> frozenset:
    """Parameters whose string literal a function's summary depends on: those it compares with literals
    (`if mode == "relu":`, `act in ("gelu", "silu")`) or keeps on an object for its methods to compare
    (`self.activation = activation`). Any other string argument (a model zoo's variant name) is just a string:
    calls that differ only in it share one summary. Kept with the tree: one walk per function."""
    found = getattr(fn, "_literal_parameters", None)
    if found is None:
        args = fn.args
        params = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
        names: set = set()
        for node in ast.walk(fn):
            if isinstance(node, ast.Compare):
                sides = [node.left] + node.comparators
                for op, left, right in zip(node.ops, sides, sides[1:]):
                    if isinstance(op, (ast.In, ast.NotIn)):  # `act in ("gelu", "silu")`, not `"radio" in name`
                        pairs = ((left, right),)
                    else:
                        pairs = ((left, right), (right, left))
                    names.update(a.id for a, b in pairs if isinstance(a, ast.Name) and _literal_expr(b))
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) \
                    and any(isinstance(t, ast.Attribute) for t in node.targets):
                names.add(node.value.id)
        found = frozenset(names & params)
        fn._literal_parameters = found
    return found


def _literal_expr(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and bool(node.elts) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts)


def unlettered(value: Value) -> Value:
    """A string literal as just a string."""
    return replace(value, extra=()) if value.kind == "str" and value.extra else value


def symbolic(actual: Value, root: str, depth: int = 0) -> Value:
    """The stand-in for an argument inside a summary: its shape, with symbolic names."""
    items = actual.items
    if items is not None and depth < 3 and len(items) <= MAX_SHAPE_ITEMS:
        keys = actual.keys
        items = tuple(symbolic(v, f"{root}.{keys[i] if keys is not None else i}", depth + 1)
                      for i, v in enumerate(items))
    elif items is not None:
        merged = flat(actual)
        items = (symbolic(merged, root, depth + 1),) if items else ()
        actual = replace(actual, keys=None)
    srcs = frozenset({root}) if actual.srcs or (items and any(i.srcs for i in items)) else EMPTY
    name = root if (actual.name is not None or actual.kind in ("module", "object", "optimizer", "params")
                    or actual.leaf) else None
    extra = actual.extra  # an object's attributes keep their names (the summary is per object state)
    return replace(actual, srcs=srcs, cuts=(), items=items, name=name, deps=frozenset({root}), pending=False,
                   extra=extra, captured=((root, -1),) if srcs and actual.captured else ())


def object_attrs(value: Value):
    """The ((name, Value), ...) attributes of a plain object's value, or None."""
    if value.kind == "object" and value.extra and value.extra[0] == "object":
        return value.extra[1]
    return None


def shape_of(value: Value, depth: int = 0) -> tuple:
    """What a summary may depend on: everything but the names of sources and the cuts already made."""
    items = None
    if value.items is not None:
        if depth < 3 and len(value.items) <= MAX_SHAPE_ITEMS:
            items = (value.keys, tuple(shape_of(v, depth + 1) for v in value.items))
        else:
            items = ("many", shape_of(flat(value), depth + 1))
    return (value.kind, value.fw, value.dtype, value.leaf, bool(value.srcs), bool(value.captured),
            _ident(value.cls), _ident(value.func),
            _ident(value.ref), value.opaque, value.traced, value.jtraced, value.refinable, value.saved_by,
            _extra_shape(value.extra, depth), items)


def _ident(obj: Any):
    if isinstance(obj, tuple) and obj[:1] == ("object",):
        return id(obj)
    if obj is None or isinstance(obj, (str, int, float, bool, tuple)):
        return obj
    return id(obj)


def _extra_shape(extra: tuple, depth: int):
    if extra[:1] == ("object",):
        return ("object", id(extra))
    out = []
    for e in extra:
        if isinstance(e, Value):
            out.append(shape_of(e, depth + 1))
        elif isinstance(e, tuple):
            out.append(_extra_shape(e, depth + 1))
        elif isinstance(e, (str, int, float, bool)) or e is None:
            out.append(e)
        else:
            out.append(id(e))
    return tuple(out)


class Substitution:
    """Replace the symbolic names of one summary by what a call site's arguments carry."""

    def __init__(self, actuals: dict[str, Value]):
        self.actuals = actuals  # symbolic root ("$12_0") -> the caller's value
        self.renamed: dict[int, Any] = {}  # id(event in the summary) -> its instantiated copy

    # ----------------------------------------------------------------- names
    def mine(self, name: str) -> bool:
        """A symbol of this summary (another summary's symbols are left for it to substitute)."""
        return is_symbolic(name) and name.partition(".")[0] in self.actuals

    def names(self, names: frozenset) -> frozenset:
        out: set = set()
        for name in names:
            if self.mine(name):
                out |= self.resolve(name)
            else:
                out.add(name)
        return frozenset(out)

    def resolve(self, name: str) -> frozenset:
        root, _, rest = name.partition(".")
        actual = self.actuals.get(root)
        if actual is None:
            return EMPTY
        return resolve_path(actual, rest.split(".") if rest else [])

    def actual_at(self, name: str) -> Value | None:
        """The caller's value at a symbolic path, when the path only indexes containers and objects."""
        root, _, rest = name.partition(".")
        value = self.actuals.get(root)
        for part in rest.split(".") if rest else []:
            if value is None:
                return None
            attrs = object_attrs(value)
            if attrs is not None:
                value = dict(attrs).get(part)
                continue
            if value.items is None:
                return None
            value = value.item(_key(part, value))
        return value

    # ----------------------------------------------------------------- values
    def cut(self, c: Cut) -> Cut | None:
        if not any(self.mine(s) for s in c.lost):
            return c
        lost = self.names(c.lost)
        return c.with_lost(lost) if lost else None

    def cuts(self, cuts: tuple) -> tuple:
        out = []
        for c in cuts:
            new = self.cut(c)
            if new is not None:
                out.append(new)
        return tuple(out)

    def value(self, value: Value, depth: int = 0) -> Value:
        if not value.deps and not any(self.mine(s) for s in value.srcs) and value.name is None \
                and value.items is None and not value.extra and id(value.ref) not in self.renamed and not value.terms \
                and not any(self.mine(s) for c in value.cuts for s in c.lost):
            if any(t >= 0 for _, t in value.captured):
                # times in the summary's own record mean nothing in the caller's: the call site notes them
                return replace(value, captured=self.captured(value.captured))
            return value
        # an argument handed back as it came (a model, an optimizer): the caller's own value
        if value.name is not None and self.mine(value.name) and value.kind in (
                "module", "object", "optimizer", "params", "function", "class", "external", "container", "dict") \
                and value.srcs <= {value.name} and not value.cuts:
            actual = self.actual_at(value.name)
            if actual is not None and actual.kind == value.kind:
                return actual
        srcs = self.names(value.srcs)
        inherited: tuple = ()
        deps: set = set()
        for dep in value.deps:
            if not self.mine(dep):
                deps.add(dep)
                continue
            actual = self.actuals.get(dep.partition(".")[0])
            if actual is not None:
                inherited = dedup_cuts(inherited, actual.cuts)
                deps |= actual.deps
        cuts = dedup_cuts(self.cuts(value.cuts), inherited)
        items = value.items
        if items is not None and depth < 4:
            items = tuple(self.value(v, depth + 1) for v in items)
        name = value.name
        if name is not None and self.mine(name):
            resolved = self.resolve(name)
            name = next(iter(resolved)) if len(resolved) == 1 else None
        extra = self.extra(value.extra, depth) if value.extra else value.extra
        ref = self.renamed.get(id(value.ref), value.ref) if value.ref is not None else None
        terms = tuple((node, self.names(term_srcs), self.cuts(term_cuts))
                      for node, term_srcs, term_cuts in value.terms) if value.terms else ()
        return replace(value, srcs=srcs, cuts=cuts, items=items, name=name, deps=frozenset(deps), extra=extra,
                       ref=ref, captured=self.captured(value.captured), terms=terms)

    def captured(self, captured: tuple) -> tuple:
        """Capture times in the caller's record: an argument's are the caller's own; what the function
        captured itself happened during the call (the call site fills those in)."""
        if not captured:
            return ()
        out: dict = {}
        for src, t in captured:
            if t >= 0:
                continue  # captured inside the call: the call site notes it
            if not self.mine(src):
                out[src] = t  # an outer summary's argument: its time stays the outer one's
                continue
            root = src.partition(".")[0]
            actual = self.actuals.get(root)
            if actual is None or not actual.captured:
                continue
            times = dict(actual.captured)
            for name in self.resolve(src):
                found = times.get(name)
                if found is None:
                    found = next((tt for s, tt in actual.captured if name.startswith(s + ".")
                                  or s.startswith(name + ".")), None)
                if found is not None and (name not in out or found < out[name]):
                    out[name] = found
        return tuple(sorted(out.items()))

    def extra(self, extra: tuple, depth: int) -> tuple:
        if depth > 4:
            return extra
        out = []
        for e in extra:
            if isinstance(e, Value):
                out.append(self.value(e, depth + 1))
            elif isinstance(e, tuple):
                out.append(self.extra(e, depth + 1))
            else:
                out.append(e)
        return tuple(out)

    def event(self, event: Any) -> Any:
        """A copy of an event with every value, cut and source set in its fields substituted."""
        cls = type(event)
        fields = dict(event.__dict__)  # always a copy: each call site records its own event
        for name in _init_fields(cls):
            old = fields[name]
            if old is None or type(old) in _PLAIN:
                continue
            fields[name] = self.any(old)
        fields["seq"] = 0  # placed in the program's order when it is emitted
        new_event = object.__new__(cls)
        new_event.__dict__ = fields
        self.renamed[id(event)] = new_event
        return new_event

    def any(self, obj: Any):
        if id(obj) in self.renamed:
            return self.renamed[id(obj)]
        if isinstance(obj, Value):
            return self.value(obj)
        if isinstance(obj, Cut):
            return self.cut(obj) or obj.with_lost(EMPTY)
        if isinstance(obj, frozenset) and obj and all(isinstance(s, str) for s in obj):
            return self.names(obj) if any(self.mine(s) for s in obj) else obj
        if isinstance(obj, list) and obj and any(isinstance(o, str) and self.mine(o) for o in obj):
            return sorted(self.names(frozenset(obj)))
        return obj


_PLAIN = frozenset({str, bool, int, float})  # field values a substitution never changes


@functools.cache
def _init_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in records.fields(cls) if f.init)


def resolve_path(actual: Value, parts: list[str]) -> frozenset:
    value = actual
    for i, part in enumerate(parts):
        attrs = object_attrs(value)
        if attrs is not None:
            found = dict(attrs).get(part)
            if found is None:
                return value.srcs
            value = found
            continue
        if value.items is not None and value.items:
            sub = value.item(_key(part, value))
            if sub is None:
                return flat(value).srcs
            value = sub
            continue
        if value.kind in ("tensor", "array", "number") and not value.refinable:
            return value.srcs
        rest = ".".join(parts[i:])
        return frozenset(f"{s}.{rest}" for s in value.srcs)
    return value.srcs


def _key(part: str, value: Value):
    if value.keys is not None:
        for k in value.keys:
            if str(k) == part:
                return k
        return part
    try:
        return int(part)
    except ValueError:
        return part


def callee_key(node: ast.AST) -> int:
    return id(node)


class Renaming(Substitution):
    """Rename sources by a mapping (a fresh layer's placeholder label -> the names it was bound to)."""

    def __init__(self, mapping: dict):
        super().__init__({})
        self.mapping = mapping  # label -> frozenset of names

    def mine(self, name: str) -> bool:
        return name.partition(".")[0] in self.mapping

    def resolve(self, name: str) -> frozenset:
        root, dot, rest = name.partition(".")
        return frozenset(n + dot + rest for n in self.mapping.get(root, ()))

    def actual_at(self, name: str):
        return None

    def captured(self, captured: tuple) -> tuple:
        return captured
