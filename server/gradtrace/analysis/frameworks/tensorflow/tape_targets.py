"""A gradient whose target the tape never recorded: computed after the tape's `with` block ended, computed
before it started, or computed inside it only from values computed before it (`pred = model(x)` first).

These read the function that takes the gradient as written (its assignments, from the file's node index)
together with what the interpreter knows of the names it reads at that point.
"""

from __future__ import annotations

import ast

from gradtrace.analysis.core.frames import Frame
from gradtrace.analysis.core.values import UNKNOWN, covered, flat
from gradtrace.analysis.frameworks.common import ASSIGNMENTS, FUNCTION_SCOPES
from gradtrace.analysis.frameworks.tensorflow.events import TapeInfo

DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)
BLOCKS = (ast.With, ast.AsyncWith) + DEFS + (ast.Module,)
BRANCHING = (ast.For, ast.While, ast.If, ast.Try, ast.With, ast.FunctionDef, ast.Lambda)
TF_PREFIXES = ("tensorflow.", "keras.")
# what a name a tape source may hold when it is a variable or a model's variables (not a computed tensor)
HELD_KINDS = frozenset({"var", "module", "varlist", "container", "dict", "param", "object"})
# callees whose call a tape records
RECORDED_CALLS = frozenset({"callable", "module", "function", "method", "param", "object"})
# what a name holding the target may be when it is not one computed tensor
NOT_COMPUTED = frozenset({"container", "varlist", "dict", "grads", "module", "var"})


class TapeTargets:
    def __init__(self, plugin):
        self.plugin = plugin
        self.after: dict = {}  # gradient node -> (name, assignment node, with node)
        self.forward: dict = {}  # gradient node -> (input name, its assignment before the tape, target, with)
        self.outside: dict = {}  # gradient node -> (name, assignment node)

    def check(self, node: ast.Call, tape: TapeInfo, meant, frame: Frame) -> None:
        """A target computed before the tape started recording (and not recomputed inside it)."""
        target = node.args[0] if node.args else None
        with_node = tape.with_node
        scopes = self.plugin.scopes(frame.module)
        if not isinstance(target, ast.Name) or with_node is None or scopes.contains(with_node, node):
            return
        fn = scopes.enclosing(with_node, FUNCTION_SCOPES)
        if fn is not scopes.enclosing(node, FUNCTION_SCOPES):
            return
        name = target.id
        scope = fn if fn is not None else frame.module.source.tree
        if self.after_tape(node, with_node, name, scope, frame):
            return
        if any(n.id == name and isinstance(n.ctx, ast.Store) for n in scopes.within(ast.Name, with_node)):
            self.before_tape(node, with_node, name, scope, meant, frame)
            return
        before = None
        for stmt in scopes.assignments_to(name, scope):
            if stmt.lineno < with_node.lineno and (before is None or stmt.lineno > before.lineno):
                before = stmt
        if before is None or not isinstance(before, ast.Assign) or not isinstance(before.targets[0], ast.Name):
            return
        value = self.plugin.interp.lookup(before.targets[0].id, frame)
        if value is not None and value.srcs:
            self.outside.setdefault(node, (name, before))

    def before_tape(self, node: ast.Call, with_node: ast.AST, name: str, scope: ast.AST, meant,
                    frame: Frame) -> None:
        """The target is computed in the tape only from values computed before it (`pred = model(x)` first)."""
        scopes = self.plugin.scopes(frame.module)
        if any(n is not with_node for n in scopes.within(BRANCHING, with_node)):
            return  # keep to a straight-line block
        stores: dict = {}  # name -> assignments inside the with block
        for stmt in scopes.within(ASSIGNMENTS, with_node):
            for t in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        stores.setdefault(n.id, []).append(stmt)
        outside = self.inputs_from_before(self.slice_of(name, stores), stores, frame)
        if not outside:
            return
        first = outside[0]
        before = None
        for stmt in scopes.assignments_to(first, scope):
            if stmt.lineno >= with_node.lineno or before is not None:
                return  # assigned more than once, or after the tape started
            before = stmt
        if before is None or not self.records_op(before, frame):
            return
        value = flat(self.plugin.interp.lookup(first, frame) or UNKNOWN)
        if meant is not None and not (value.srcs & meant) and not any(covered(o, meant) for o in value.srcs):
            return
        self.forward.setdefault(node, (first, before, name, with_node))

    @staticmethod
    def slice_of(name: str, stores: dict) -> list:
        """The assignments in the block that `name` depends on."""
        names, todo, stmts = {name}, [name], []
        while todo:
            for stmt in stores.get(todo.pop(), []):
                if stmt in stmts:
                    continue
                stmts.append(stmt)
                for n in ast.walk(stmt.value) if stmt.value is not None else ():
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in stores and n.id not in names:
                        names.add(n.id)
                        todo.append(n.id)
        return stmts

    def inputs_from_before(self, stmts: list, stores: dict, frame: Frame) -> list | None:
        """Names the slice reads that carry trainable sources and were computed before the block (None: the
        slice calls a model or helper, which the tape records)."""
        interp, names = self.plugin.interp, frame.module.names
        outside = []
        for stmt in stmts:
            for n in ast.walk(stmt.value):
                if isinstance(n, ast.Call):
                    if not (names.qualname(n.func) or "").startswith(TF_PREFIXES) and (
                            not isinstance(n.func, (ast.Name, ast.Attribute))
                            or interp.eval(n.func, frame).kind != "callable"):
                        return None  # a model or helper called inside the tape: recorded
                elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load) and \
                        not (names.qualname(n) or "").startswith(TF_PREFIXES):
                    if flat(interp.eval(n, frame)).srcs:
                        return None
                elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in stores:
                    value = interp.lookup(n.id, frame)
                    if value is None or not any(self.plugin.trains(o) for o in flat(value).srcs):
                        continue
                    if value.kind in HELD_KINDS or "watched" in value.extra:
                        return None
                    outside.append(n.id)
        return outside

    def after_tape(self, node: ast.Call, with_node: ast.AST, name: str, scope: ast.AST, frame: Frame) -> bool:
        """The target's last assignment runs an operation after the tape's `with` block ended."""
        scopes = self.plugin.scopes(frame.module)
        last = None
        for stmt in scopes.assignments_to(name, scope, own_scope_only=True):
            if stmt.lineno < node.lineno and (last is None or stmt.lineno > last.lineno):
                last = stmt
        if last is None or last.lineno <= (with_node.end_lineno or with_node.lineno) or \
                scopes.enclosing(last, BLOCKS) is not scopes.enclosing(node, BLOCKS):
            return False
        targets = last.targets if isinstance(last, ast.Assign) else [last.target]
        if not (len(targets) == 1 and isinstance(targets[0], ast.Name) and self.records_op(last, frame)):
            return False
        value = self.plugin.interp.lookup(name, frame)
        if value is None or not value.srcs or value.kind in NOT_COMPUTED:
            return False
        self.after.setdefault(node, (name, last, with_node))
        return True

    def records_op(self, stmt: ast.stmt, frame: Frame) -> bool:
        """Does this assignment compute a new tensor (an operation a tape would have to record)?"""
        if isinstance(stmt, ast.AugAssign):
            return True
        value = stmt.value
        if isinstance(value, (ast.BinOp, ast.UnaryOp)):
            return True
        if not isinstance(value, ast.Call):
            return False
        if (frame.module.names.qualname(value.func) or "").startswith(TF_PREFIXES):
            return True
        if not isinstance(value.func, (ast.Name, ast.Attribute)):
            return False
        return self.plugin.interp.eval(value.func, frame).kind in RECORDED_CALLS
