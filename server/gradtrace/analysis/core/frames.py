"""What the interpreter keeps while it runs: callables, frames and the events it records."""

from __future__ import annotations

import ast
from functools import cached_property

from gradtrace.analysis.core.values import Value
from gradtrace.records import field, record

TYPE_CHECKING = False  # `typing` is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any


@record(eq=False)
class FunctionRef:
    """A function, lambda or method as a value: where it is defined and what it closes over."""

    node: ast.AST  # FunctionDef | AsyncFunctionDef | Lambda
    module: Any  # the ModuleContext it is defined in
    cls: Any = None  # ClassInfo of a method
    closure: tuple = ()  # environments of the enclosing functions, innermost first
    bound: tuple = ()  # leading arguments already bound (self of a bound method, a partial's arguments)
    bound_kw: tuple = ()  # keyword arguments bound by a partial: ((name, Value), ...)
    marks: tuple = ()  # what decorators said: ("grad_off", node), ("property",), ("staticmethod",), ...

    @cached_property
    def name(self) -> str:
        return getattr(self.node, "name", "<lambda>")

    def mark(self, kind: str):
        for m in self.marks:
            if m[0] == kind:
                return m
        return None

    def params(self) -> list[str]:
        a = self.node.args
        return [p.arg for p in a.posonlyargs + a.args]


@record
class Frame:
    """One activation: a module's top level, a function body run directly, or a function being summarised."""

    module: Any  # ModuleContext
    env: dict  # name or dotted access path ("self.fc") -> Value
    func: FunctionRef | None = None
    self_value: Value | None = None
    state: dict = field(default_factory=dict)  # framework plug-ins' modes (grad mode, active tapes, ...)
    returns: list = field(default_factory=list)
    conditional: int = 0  # inside how many branches / loops that may not run
    top: bool = False  # module-level code (and its branches), not a function body
    events: list | None = None  # where events go: a summary's own list, or None for the global record
    params: tuple = ()  # parameter names of the function being summarised (for effects on arguments)
    mutated: set = field(default_factory=set)  # access paths rooted at a parameter that were mutated
    rebound: set = field(default_factory=set)  # parameters rebound on some path (no longer the caller's object)
    saved: dict = field(default_factory=dict)  # access path rooted at a parameter -> the layer that saved it
    dead: bool = False  # the path ended (return, raise, break, continue)
    loop_exit: bool = False  # it ended by break/continue: the loop goes on
    outer: Frame | None = None  # the frame a branch was split from
    loops: tuple = ()  # the loop statements this code runs inside, innermost last (in this function)
    yields: list = field(default_factory=list)  # what a generator yields
    arms: tuple = ()  # ((id(branch statement), arm index), ...): the branch arms this code runs in
    preset_args: tuple | None = None  # (call node, args, kwargs) a builtin applies a callee to


    def branch(self) -> Frame:
        child = Frame(self.module, dict(self.env), self.func, self.self_value, dict(self.state), self.returns,
                      self.conditional, self.top, self.events, self.params, self.mutated, self.rebound, self.saved)
        child.outer = self
        child.loops = self.loops
        child.yields = self.yields
        child.arms = self.arms
        return child

    @property
    def summarising(self) -> bool:
        return self.events is not None


class _Repeated:
    """Stands in a summary's record for an event that only repeats one the summary already records (the same
    definition reached by every call of a helper): it keeps the record's positions, so the times at which
    values were captured into a graph do not move, and it is never copied into a caller."""

    arms: tuple = ()
    seq: int = 0

    def __repr__(self) -> str:
        return "REPEATED"


REPEATED = _Repeated()


@record(eq=False)
class Event:
    """Something the program does that rules care about (a sink, an optimizer step, an in-place write...).

    `seq` is its place in the order the program runs (instantiated summaries keep their own order)."""

    node: ast.AST
    module: Any
    seq: int = field(default=0, init=False)
    arms: tuple = field(default=(), init=False)  # the branch arms it happened in (see `Frame.arms`)

    def exclusive_with(self, other: Event) -> bool:
        """Did the two happen in different arms of the same branch (so never both in one run)?"""
        mine = dict(self.arms)
        return any(node in mine and mine[node] != index for node, index in other.arms)
