"""What a framework plug-in answers. The interpreter asks each plug-in in turn; None means "not mine".

A plug-in gives framework meaning to external calls (`torch.*`, `tf.*`, `jax.*`), to methods and attributes
of the values it owns (tensors, modules, optimizers, tapes...), to `with` blocks and decorators, and turns
what it recorded into facts for the rules. Everything Python itself means — names, assignments, containers,
control flow, functions, classes, summaries — is the interpreter's.
"""

from __future__ import annotations

import ast

TYPE_CHECKING = False  # `typing` is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any

    from gradtrace.analysis.core.frames import Frame, FunctionRef
    from gradtrace.analysis.core.interpreter import Interpreter
    from gradtrace.analysis.core.values import Value


class Plugin:
    name = ""
    roots: frozenset = frozenset()  # qualified-name roots whose calls and attributes it answers

    def __init__(self, interp: Interpreter):
        self.interp = interp

    # --- names that come from imports
    def external_call(self, qn: str, node: ast.Call, frame: Frame) -> Value | None:
        return None

    def external_attribute(self, qn: str, node: ast.AST, frame: Frame) -> Value | None:
        return None

    # --- values the plug-in owns
    def method(self, receiver: Value, method: str, node: ast.Call, frame: Frame, args: list, kwargs: dict
               ) -> Value | None:
        return None

    def attribute(self, base: Value, attr: str, node: ast.AST, frame: Frame) -> Value | None:
        return None

    def call_object(self, callee: Value, node: ast.Call, frame: Frame, args: list, kwargs: dict) -> Value | None:
        """A call of an instance (`model(x)`, `layer(h)`)."""
        return None

    def instantiate(self, cls: Any, node: ast.Call, frame: Frame, args: list, kwargs: dict) -> Value | None:
        """`Net(...)` for a project class the framework gives meaning to (an `nn.Module`, a Keras layer)."""
        return None

    def builtin(self, name: str, node: ast.Call, frame: Frame, args: list, kwargs: dict) -> Value | None:
        """A Python builtin applied to the plug-in's values (`float(t)`, `list(model.parameters())`)."""
        return None

    # --- operators
    def binop(self, node: ast.AST, op: ast.operator, left: Value, right: Value, frame: Frame) -> Value | None:
        return None

    def compare(self, node: ast.Compare, values: list, frame: Frame) -> Value | None:
        return None

    def subscript(self, node: ast.Subscript, base: Value, index: Value, frame: Frame) -> Value | None:
        return None

    def store_subscript(self, target: ast.Subscript, base: Value, value: Value, frame: Frame,
                        stmt: ast.stmt | None) -> bool:
        """`x[i] = v`; True when handled."""
        return False

    def augassign(self, stmt: ast.AugAssign, target: Value, value: Value, frame: Frame) -> Value | None:
        return None

    def test(self, node: ast.AST, value: Value, frame: Frame) -> None:
        """A value used as a condition (`if`, `while`, `and`/`or`, `not`)."""

    def merge(self, values: list) -> Value | None:
        """The value after alternative paths that produced `values` (None: the interpreter's join)."""
        return None

    # --- binding
    def on_bind(self, name: str, value: Value, frame: Frame, stmt: ast.stmt | None) -> Value:
        """A value bound to a name or access path; may return it renamed (a fresh module takes its name)."""
        return value

    def store_attribute(self, target: ast.Attribute, owner: Value, value: Value, frame: Frame,
                        stmt: ast.stmt | None) -> bool:
        """`obj.attr = v`; True when the plug-in handled it completely."""
        return False

    # --- blocks and functions
    def enter_with(self, item: ast.withitem, value: Value, frame: Frame) -> Any:
        return None

    def exit_with(self, token: Any, frame: Frame) -> None:
        pass

    def statement(self, stmt: ast.stmt, frame: Frame) -> bool:
        """A statement with a framework meaning of its own; True when handled."""
        return False

    def decorate(self, qn: str | None, decorator: ast.AST, func: Value, frame: Frame) -> Value | None:
        return None

    def after_value(self, node: ast.AST, value: Value, frame: Frame) -> Value:
        """Every computed value passes here (a grad mode turns it into a cut)."""
        return value

    def enter_function(self, func: FunctionRef, frame: Frame, caller: Frame | None, node: ast.AST | None) -> None:
        """A function body about to run (`node`: the call, None when analysed on its own)."""

    def leave_function(self, func: FunctionRef, frame: Frame, result: Value) -> None:
        pass

    def context_key(self, frame: Frame, func: FunctionRef, node: ast.AST | None) -> tuple:
        """What of the call's context a summary depends on (part of its key)."""
        return ()

    def summary_state(self, frame: Frame) -> dict:
        """State a function leaves behind for its caller (a grad mode switched off for good)."""
        return {}

    def apply_summary_state(self, state: dict, frame: Frame) -> None:
        pass

    def emit(self, event: Any, frame: Frame) -> Any:
        """An event about to be recorded in the program's order; may adjust it to the caller's context."""
        return event

    def loop_carry(self, loop: ast.stmt, entry: dict, after_first: dict, frame: Frame) -> None:
        """A loop about to run a second pass: `after_first` holds what the first pass hands to the next."""

    def enter_loop(self, loop: ast.stmt, frame: Frame) -> None:
        """A loop about to run its first pass."""

    def loop_pass(self, loop: ast.stmt, start: int, frame: Frame, iterable: Value | None) -> None:
        """A loop's first pass ran: what it recorded is `frame`'s record from position `start` on."""

    def after_module(self) -> None:
        """After the file's top level ran: analyse what nothing called."""
