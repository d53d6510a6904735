"""The one value domain of the gradient-flow interpreter, shared by PyTorch, TensorFlow and JAX.

Every Python value the interpreter meets is abstracted to a `Value`:

- `srcs`: the trainable *sources* it carries gradient from, differentiably. A source is named by the access
  path that holds it (`net.backbone`, `W1`, `self.fc`, `params.w1`); nested names overlap their parents.
  Inside a function summary, arguments are symbolic (`$0`, `$1.fc`, `$0.w1`) and are substituted by the
  caller's values when the summary is used (see `core.summaries`).
- `cuts`: the operations upstream of it that disconnected sources (each `Cut` names what it lost).
- `kind`: what the value is to Python — a graph value (`tensor`: a torch/TF tensor or a JAX array, `fw`
  says which), a host value (`array`: NumPy; `number`: a Python scalar), a container (`container` with
  `items`, `dict` with `keys` and `items`), or an object the frameworks give meaning to (`module`,
  `optimizer`, `params`, `function`, `class`, `object`, `external`, ...).
- `dtype`: "int" | "bool" | "float" | None (unknown); `leaf`: a trainable leaf tensor; `traced`/`jtraced`:
  a JAX tracer (under any transform / under an abstract one such as jit); `refinable`: a differentiated
  pytree argument whose parts are named by their keys.
- `deps`: the symbolic inputs of a summary the value depends on at all (differentiably or not), so that
  the cuts an argument already carries reach the result; empty outside summaries.
- `made_at`: where a fresh value was made (a literal, a constructor call), when a message points there.

A value is immutable; `join` is the least upper bound used at branch merges and for containers.
"""

from __future__ import annotations

import ast

from gradtrace.records import field, record, replace

TYPE_CHECKING = False  # `typing` is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

EMPTY: frozenset = frozenset()
MAX_CUTS = 64  # cuts kept per value: enough for any message, bounded for very long chains


class Cut:
    """An operation that disconnects the sources in `lost` (what, where, how).

    Two cuts are the same when they are the same operation at the same node losing the same sources, so
    loops reach a fixpoint and summaries can be compared."""

    __slots__ = ("node", "kind", "op", "lost", "_var", "zero", "module", "via", "_key")

    def __init__(self, node: ast.AST, kind: str, op: str, lost: frozenset, var: str | ast.AST | None = None,
                 zero: bool = False, module: Any = None, via: ast.AST | None = None):
        self.node = node  # where the graph is cut
        self.kind = kind  # detach | data | item | numpy | math | rewrap | index | zero | compare | intcast | ...
        self.op = op  # what the user wrote, e.g. ".detach()"
        self.lost = lost  # sources disconnected here
        self._var = var  # the value that was cut ("latent"), or its expression until a message asks for it
        self.zero = zero  # the gradient becomes zero rather than None
        self.module = module  # the module context the node belongs to (its file)
        self.via = via  # e.g. the decorated helper's `def` for a no_grad helper
        self._key = (id(node), kind, op, lost, zero)

    def __eq__(self, other):
        return isinstance(other, Cut) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        return f"Cut({self.kind} {self.op!r} line {getattr(self.node, 'lineno', '?')} lost={sorted(self.lost)})"

    @property
    def var(self) -> str | None:
        """The value that was cut, as the user wrote it (rendered on first use: most cuts are never shown)."""
        var = self._var
        if isinstance(var, ast.AST):
            var = self._var = expr_text(var)
        return var

    @property
    def unnamed(self) -> bool:
        """No value was named for this cut (its text is not rendered to find out)."""
        return self._var is None

    def with_lost(self, lost: frozenset) -> Cut:
        if lost == self.lost:
            return self
        return Cut(self.node, self.kind, self.op, lost, self._var, self.zero, self.module, self.via)

    def with_var(self, var: str | None) -> Cut:
        return Cut(self.node, self.kind, self.op, self.lost, var, self.zero, self.module, self.via)

    @property
    def line(self) -> int:
        return getattr(self.node, "lineno", 0)


@record(frozen=True)
class Value:
    kind: str = "unknown"
    srcs: frozenset = EMPTY
    cuts: tuple = ()
    items: tuple | None = None  # container elements, in order when known
    keys: tuple | None = None  # dict keys aligned with `items` (constants), None for sequences
    name: str | None = None  # the source name of a module / leaf / optimizer value
    cls: Any = None  # ClassInfo of instances of project classes; qualified name for framework classes
    func: Any = None  # FunctionRef for callables
    ref: Any = None  # kind-specific payload (optimizer record, tape, transformed function, ...)
    fw: str | None = None  # torch | tensorflow | jax: the framework a graph value belongs to
    dtype: str | None = None  # int | bool | float | None (unknown)
    leaf: bool = False  # a leaf tensor that requires grad (trainable)
    saved_by: str | None = None  # op that saved this tensor for backward (in-place on it breaks backward)
    opaque: bool = False  # provenance not fully known (function argument, unknown call)
    pending: bool = False  # a fresh leaf/module not yet named by an assignment
    traced: bool = False  # JAX: a tracer (any transform)
    jtraced: bool = False  # JAX: an abstract tracer (jit/vmap): no concrete value
    refinable: bool = False  # a pytree whose parts are named by their keys (`params.w1`)
    deps: frozenset = EMPTY  # symbolic inputs of the enclosing summary this value depends on
    # ((source, t), ...): when the graph first captured each source (a position in the event record of
    # the frame that built it; -1: before the function being summarised began). A step or in-place write
    # on a source after its capture invalidates the graph for backward.
    captured: tuple = ()
    # ((term node, its sources, its cuts), ...): summands of a sum that carry no gradient from what they were
    # computed from (a regulariser built from detached values): candidates for a dead loss term
    terms: tuple = ()
    extra: tuple = field(default=(), compare=True)
    # where a fresh value was made (a literal, a constructor call), for messages that point at it; not part of
    # what the value is (equality, summary shapes)
    made_at: ast.AST | None = field(default=None, compare=False)
    # ((branch arm, node, module), ...): the arms of `if` statements on which this value is a constant that nothing
    # trainable reaches (`loss = torch.tensor(0.)` when a batch has no boxes), with where that constant was made
    # there; it carries gradient on the other paths. Not part of what the value is.
    constant_on: tuple = field(default=(), compare=False)
    # the assignment that stored this one-shot iterator (`params = model.parameters()`, a `filter(...)`, a generator
    # expression): what iterates it first leaves nothing for the next. Not part of what the value is.
    oneshot: ast.stmt | None = field(default=None, compare=False)

    @property
    def carries_grad(self) -> bool:
        return bool(self.srcs)

    @property
    def intlike(self) -> bool:
        return self.dtype in ("int", "bool")

    def item(self, key):
        """The element under a constant key (dicts) or index (sequences), or None."""
        if self.items is None:
            return None
        if self.keys is not None:
            for k, v in zip(self.keys, self.items):
                if k == key:
                    return v
            return None
        if isinstance(key, int) and not isinstance(key, bool) and -len(self.items) <= key < len(self.items):
            return self.items[key]
        return None


UNKNOWN = Value(opaque=True)
NONE = Value("none")
NUMBER = Value("number")
STR = Value("str")
# the literals `True` and `False`: a flag given one decides the branches it is tested in (`if use_checkpoint:`);
# a join of the two (or with anything else) is just a bool
TRUE = Value("number", dtype="bool", extra=(("const", True),))
FALSE = Value("number", dtype="bool", extra=(("const", False),))


MAX_LITERAL_STRING = 40


def str_value(text: str) -> Value:
    """A string literal: a short word-like one (`'relu'`, `"mean"`, `"bilinear"`) keeps its text, so that a flag
    given one decides the branches that compare it (`if self.activation == 'relu':`); others are just strings."""
    if len(text) <= MAX_LITERAL_STRING and text.replace("_", "").replace("-", "").replace(".", "").isalnum():
        return Value("str", extra=(("const", text),))
    return STR


NO_LITERAL = object()


def literal_of(value: Value):
    """The Python value of a literal (a bool, a short string, None), else NO_LITERAL."""
    if value.kind == "none":
        return None if not value.srcs else NO_LITERAL
    if value.kind in ("number", "str") and value.extra[:1] and value.extra[0][:1] == ("const",) and not value.srcs:
        return value.extra[0][1]
    return NO_LITERAL


def known_truth(value: Value) -> bool | None:
    """True / False for a value known to be that literal, else None."""
    if value.kind in ("number", "str") and value.extra[:1] and value.extra[0][:1] == ("const",) and not value.srcs:
        return bool(value.extra[0][1])
    return None
# Kinds whose meaning is carried by `ref`/`func`/`cls`/`extra`: a join of different ones is unknown.
IDENTITY_KINDS = frozenset({"external", "builtin", "function", "method", "class", "module", "object", "optimizer",
                            "grad_ctx", "super", "tape", "gradfn", "jitfn", "partial", "metric", "var"})


def merge_captured(*groups) -> tuple:
    """Capture times of several values together: the earliest per source."""
    groups = [g for g in groups if g]
    if not groups:
        return ()
    if len(groups) == 1:
        return groups[0]
    first: dict = {}
    for group in groups:
        for src, t in group:
            if src not in first or t < first[src]:
                first[src] = t
    return tuple(sorted(first.items()))


MAX_TERMS = 8


def merge_terms(*groups) -> tuple:
    groups = [g for g in groups if g]
    if not groups:
        return ()
    if len(groups) == 1:
        return groups[0]
    seen: set = set()
    out = []
    for group in groups:
        for term in group:
            key = (id(term[0]), id(term[2][0].node) if term[2] else 0)
            if key not in seen:
                seen.add(key)
                out.append(term)
    return tuple(out[:MAX_TERMS])


def dead_term(value: Value, node) -> tuple:
    """`value` as a summand: a candidate dead term when something it was computed from was cut."""
    if value.kind not in ("tensor", "unknown", "number") or not value.cuts:
        return ()
    lost = frozenset().union(*(c.lost for c in value.cuts))
    if not lost or lost <= value.srcs:
        return ()
    return ((node, value.srcs, value.cuts),)


def dedup_cuts(*groups) -> tuple:
    seen: set = set()
    out: list = []
    for group in groups:
        for c in group:
            if c not in seen:
                seen.add(c)
                out.append(c)
    return tuple(out[:MAX_CUTS])


def join(*values: Value, paths: bool = False) -> Value:
    """A value that may be any of `values` (branches, containers, arithmetic). `paths`: the values are what
    different paths of the program computed (branches, returns), so a summand known on one of them stays known."""
    if len(values) == 2:  # two branches, two operands: most joins
        first, second = values
        if second is None or second is first:
            return UNKNOWN if first is None else first
        if first is None:
            return second
        if first == second:
            return first
    else:
        values = tuple([v for v in values if v is not None])
        if not values:
            return UNKNOWN
        first = values[0]
        if len(values) == 1:
            return first
        for v in values:
            if v is not first and v != first:
                break
        else:
            return first
    # loops over the values, not a generator per field: this runs at every merge of branches
    srcs, deps, cuts, captured, fw, opaque, traced, jtraced = _gathered(values)
    kind = first.kind
    dtype = first.dtype
    terms = first.terms
    mixed_kinds = has_tensor = False
    refinable = leaf = True
    saved_by = first.saved_by
    term_groups: list = []
    for v in values:
        if v.kind != kind:
            mixed_kinds = True
        if v.kind == "tensor":
            has_tensor = True
        if v.dtype != dtype:
            dtype = None
        if paths:
            if v.terms:
                term_groups.append(v.terms)
        elif v.terms != terms:
            terms = ()
        refinable = refinable and v.refinable
        leaf = leaf and v.leaf
        if not v.saved_by:
            saved_by = None
    # summands are only known on one path (a container's merged elements or two branches may mix a dead term
    # of one with the live value of another)
    if paths:
        terms = merge_terms(*term_groups)
    if mixed_kinds:
        kind = "tensor" if has_tensor else "unknown"
    if kind in IDENTITY_KINDS:
        if all(v.extra == first.extra and v.func is first.func and v.cls is first.cls and v.ref is first.ref
               for v in values):
            return replace(first, srcs=srcs, cuts=cuts, deps=deps, captured=captured)
        kind = "unknown"
    items = keys = None
    if kind in ("container", "dict") and all(v.items is not None for v in values):
        lengths = {len(v.items) for v in values}
        key_sets = {v.keys for v in values}
        if len(lengths) == 1 and len(key_sets) == 1:  # same shape: element-wise
            keys = first.keys
            items = tuple(join(*parts, paths=paths) for parts in zip(*(v.items for v in values)))
        else:
            keys = None if kind == "container" else first.keys
            merged = join(*(i for v in values for i in v.items)) if any(v.items for v in values) else None
            items = (merged,) if merged is not None else ()
            if kind == "dict":
                kind, keys = "container", None
    constant_on = ()
    if paths:  # a path of any of them is a path of the join
        marked = [v.constant_on for v in values if v.constant_on]
        constant_on = marked[0] if len(marked) == 1 else tuple(dict.fromkeys(e for m in marked for e in m))
    return Value(
        constant_on=constant_on,
        kind=kind,
        srcs=srcs,
        cuts=cuts,
        items=items,
        keys=keys,
        opaque=opaque,
        dtype=dtype,
        fw=fw,
        traced=traced,
        jtraced=jtraced,
        refinable=refinable,
        leaf=leaf,
        deps=deps,
        captured=captured,
        terms=terms,
        # saved for backward only when it is on every path: an in-place write then breaks backward whichever runs
        # (`relu(layer(x)) if i < n - 1 else layer(x)` in a loop leaves the last layer's output unsaved)
        saved_by=saved_by,
    )


def flat(value: Value) -> Value:
    """A container seen as one value (its items joined into it)."""
    if not value.items:
        return value if value.items is None else replace(value, items=None, keys=None)
    merged = join(*value.items)
    return Value("unknown", srcs=value.srcs | merged.srcs, cuts=dedup_cuts(value.cuts, merged.cuts),
                 opaque=value.opaque or merged.opaque, deps=value.deps | merged.deps,
                 traced=value.traced or merged.traced, jtraced=value.jtraced or merged.jtraced, dtype=merged.dtype,
                 captured=merge_captured(value.captured, merged.captured))


def combine(kind: str, *values: Value, dtype: str | None = None, saved_by: str | None = None,
            fw: str | None = None) -> Value:
    """The result of a differentiable operation on `values`."""
    if not values:
        return Value(kind, dtype=dtype, saved_by=saved_by, fw=fw)
    srcs, deps, cuts, captured, own_fw, opaque, traced, jtraced = _gathered(
        [flat(v) if v.items else v for v in values])
    return Value(kind=kind, srcs=srcs, cuts=cuts, opaque=opaque, dtype=dtype, saved_by=saved_by,
                 fw=own_fw if fw is None else fw, deps=deps, traced=traced, jtraced=jtraced, captured=captured,
                 constant_on=constant_together(values))


def constant_together(values) -> tuple:
    """The arms on which every operand that carries gradient is a constant: there the result is one too."""
    carrying = [v for v in values if v.srcs]
    if not carrying or not all(v.constant_on for v in carrying):
        return ()
    if len(carrying) == 1:
        return carrying[0].constant_on
    arms = set.intersection(*({e[0] for e in v.constant_on} for v in carrying))
    return tuple(dict.fromkeys(e for v in carrying for e in v.constant_on if e[0] in arms))


def fresh_constant(value: Value) -> bool:
    """A PyTorch tensor made from nothing trainable (`torch.tensor(0.)`, `x.new_zeros(1)`): no graph at all."""
    return value.kind == "tensor" and not value.srcs and not value.cuts and not value.opaque and not value.deps \
        and value.fw in (None, "torch") and value.items is None


def _gathered(values) -> tuple:
    """What a value made from `values` carries of them all: (sources, dependencies, cuts, capture times, their one
    framework or None, opaque, traced, jtraced), from one loop."""
    srcs = deps = EMPTY
    cut_groups: list = []
    captured_groups: list = []
    fw = None
    mixed_fws = opaque = traced = jtraced = False
    for v in values:
        if v.srcs:
            srcs = srcs | v.srcs if srcs else v.srcs
        if v.deps:
            deps = deps | v.deps if deps else v.deps
        if v.cuts:
            cut_groups.append(v.cuts)
        if v.captured:
            captured_groups.append(v.captured)
        if v.fw:
            if fw is None:
                fw = v.fw
            elif v.fw != fw:
                mixed_fws = True
        opaque = opaque or v.opaque
        traced = traced or v.traced
        jtraced = jtraced or v.jtraced
    return (srcs, deps, dedup_cuts(*cut_groups) if cut_groups else (), merge_captured(*captured_groups),
            None if mixed_fws else fw, opaque, traced, jtraced)


def cut(value: Value, node: ast.AST, kind: str, op: str, *, var: str | ast.AST | None = None, zero: bool = False,
        result_kind: str | None = None, module: Any = None, via: ast.AST | None = None,
        dtype: str | None = None, fw: str | None = None) -> Value:
    """`value` after an operation that disconnects it from autograd."""
    value = flat(value) if value.items else value
    new_cuts = value.cuts
    if value.srcs:
        new_cuts = dedup_cuts(value.cuts, (Cut(node, kind, op, value.srcs, var, zero, module, via),))
    return Value(kind=result_kind or value.kind, srcs=EMPTY, cuts=new_cuts, opaque=value.opaque, dtype=dtype,
                 deps=value.deps, fw=fw if fw is not None else value.fw, jtraced=value.jtraced,
                 traced=value.jtraced)


def last_cuts(cuts: tuple) -> list:
    """The cuts of a value that are the last on their sources' way (in the order they were made): one whose
    sources all reached a later cut that lost them again went on by another path, so it is not what cut them
    (a straight-through `stop_gradient` before a `round` that cuts everything)."""
    return [c for i, c in enumerate(cuts)
            if not any(d.node is not c.node and d.lost >= c.lost for d in cuts[i + 1:])]


def named(value: Value, name: str) -> Value:
    """A fresh leaf or module value bound to the variable `name` (its source name)."""
    if value.pending:
        srcs = frozenset({name}) if (value.leaf or value.kind in ("module", "tensor")) and value.srcs else EMPTY
        captured = value.captured
        if srcs and captured:
            # the call that made a leaf does not record it in a graph: the first operation on it does (under its
            # name, which the placeholder's capture would otherwise hide)
            captured = tuple((s, t) for s, t in captured if s not in value.srcs)
        return replace(value, name=name, srcs=srcs or value.srcs, pending=False, captured=captured)
    return value


def overlaps(a: str, b: str) -> bool:
    """Source names refer to the same or nested things ("net" and "net.backbone")."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def alive_in(source: str, srcs: frozenset) -> bool:
    return any(overlaps(source, s) for s in srcs)


def covered(origin: str, live: frozenset) -> bool:
    """Is `origin` (e.g. "params.w1") still reached by the live sources ("params", "params.w1.0")?"""
    if origin in live:
        return True
    parts = origin.split(".")
    for i in range(1, len(parts)):
        if ".".join(parts[:i]) in live:
            return True
    prefix = origin + "."
    return any(o.startswith(prefix) for o in live)


def display(source: str) -> str:
    """`self.backbone` -> `backbone` for messages."""
    return source[5:] if source.startswith("self.") else source


def expr_text(node: ast.AST | None) -> str | None:
    """The expression as the user might have written it, shortened for a message."""
    if node is None:
        return None
    try:
        text = ast.unparse(node)
    except Exception:  # noqa: BLE001 - unparse of odd trees
        return None
    return text if len(text) <= 40 else text[:37] + "..."


def is_symbolic(name: str) -> bool:
    return name.startswith("$")
