"""Abstract values for the value flow: what a Python value carries for autograd.

A `Value` says which gradient *sources* reach it differentiably (`srcs`: trainable things, named by
the variable that holds them, e.g. "net.backbone", "W1") and which *cuts* it went through on the way
(`cuts`: where a source was disconnected, and how). A source that reaches a sink only through cuts,
never directly, gets no gradient there.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, replace
from typing import Any

EMPTY: frozenset[str] = frozenset()


@dataclass(frozen=True, eq=False)
class Cut:
    node: ast.AST  # where the graph is cut
    kind: str  # detach | data | item | numpy | math | rewrap | index | zero | compare | intcast | no_grad | ...
    op: str  # what the user wrote, e.g. ".detach()"
    lost: frozenset[str]  # sources disconnected here
    var: str | None = None  # the value that was cut, e.g. "latent"
    zero: bool = False  # the gradient becomes zero rather than None
    module: Any = None  # the ModuleContext the node belongs to (its file)
    via: ast.AST | None = None  # e.g. the decorated helper's `def` for a no_grad helper


@dataclass(frozen=True)
class Value:
    kind: str = "unknown"  # tensor | module | params | optimizer | number | array | container | bool | ...
    srcs: frozenset[str] = EMPTY
    cuts: tuple[Cut, ...] = ()
    items: tuple[Value, ...] | None = None  # container elements, in order when known
    name: str | None = None  # the source name of a module / leaf / optimizer value
    cls: Any = None  # ClassInfo for instances of project classes; qualified name str for built-in layers
    func: Any = None  # FunctionInfo for callables
    leaf: bool = False  # a leaf tensor that requires grad (trainable)
    intlike: bool = False  # integer or bool dtype
    saved_by: str | None = None  # op that saved this tensor for backward (in-place on it breaks backward)
    opaque: bool = False  # provenance not fully known (function argument, unknown call)
    pending: bool = False  # a fresh leaf/module not yet named by an assignment
    extra: tuple = field(default=(), compare=True)

    @property
    def carries_grad(self) -> bool:
        return bool(self.srcs)


UNKNOWN = Value(opaque=True)
# Kinds whose meaning is carried by `extra`/`func`/`cls`: a join of different ones is unknown.
IDENTITY_KINDS = {"external", "builtin", "function", "method", "class", "module", "object", "optimizer", "grad_ctx",
                  "super"}
NUMBER = Value("number")
TENSOR = Value("tensor")


def join(*values: Value) -> Value:
    """A value that may be any of `values` (branches, containers, arithmetic)."""
    values = tuple(v for v in values if v is not None)
    if not values:
        return UNKNOWN
    if len(values) == 1:
        return values[0]
    srcs = frozenset().union(*(v.srcs for v in values))
    cuts: list[Cut] = []
    seen = set()
    for v in values:
        for c in v.cuts:
            if id(c) not in seen:
                seen.add(id(c))
                cuts.append(c)
    kinds = {v.kind for v in values}
    kind = kinds.pop() if len(kinds) == 1 else ("tensor" if "tensor" in kinds else "unknown")
    if kind in IDENTITY_KINDS:
        first = values[0]
        if all(v.kind == kind and v.extra == first.extra and v.func is first.func and v.cls is first.cls
               for v in values):
            return replace(first, srcs=srcs, cuts=tuple(cuts[:64]))
        kind = "unknown"
    return Value(
        kind=kind,
        srcs=srcs,
        cuts=tuple(cuts[:64]),
        opaque=any(v.opaque for v in values),
        intlike=all(v.intlike for v in values),
    )


def combine(kind: str, *values: Value, intlike: bool = False, saved_by: str | None = None) -> Value:
    """The result of a differentiable operation on `values`."""
    j = join(*values) if values else Value()
    return Value(kind=kind, srcs=j.srcs, cuts=j.cuts, opaque=j.opaque, intlike=intlike, saved_by=saved_by)


def cut(value: Value, node: ast.AST, kind: str, op: str, *, var: str | ast.AST | None = None, zero: bool = False,
        result_kind: str | None = None, module: Any = None, via: ast.AST | None = None,
        intlike: bool = False) -> Value:
    """`value` after an operation that disconnects it from autograd."""
    new_cuts = value.cuts
    if value.srcs:
        if isinstance(var, ast.AST):
            var = expr_text(var)
        new_cuts = value.cuts + (Cut(node, kind, op, value.srcs, var, zero, module, via),)
    return Value(kind=result_kind or value.kind, srcs=frozenset(), cuts=new_cuts, opaque=value.opaque,
                 intlike=intlike, items=None)


def named(value: Value, name: str) -> Value:
    """A fresh leaf or module value bound to the variable `name` (its source name)."""
    if value.pending:
        srcs = frozenset({name}) if (value.leaf or value.kind in ("module", "tensor")) and value.srcs else EMPTY
        return replace(value, name=name, srcs=srcs or value.srcs, pending=False)
    return value


def overlaps(a: str, b: str) -> bool:
    """Source names refer to the same or nested things ("net" and "net.backbone")."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def alive_in(source: str, srcs: frozenset[str]) -> bool:
    return any(overlaps(source, s) for s in srcs)


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
