"""A gradient whose target the tape never recorded: computed after the tape's `with` block ended, computed
before it started, or computed inside it only from values computed before it (`pred = model(x)` first).

These read the function that takes the gradient as written (its assignments, from the file's node index)
together with what the interpreter knows of the names it reads at that point.
"""

from __future__ import annotations

import ast

from gradtrace.analysis.core.frames import Frame
from gradtrace.analysis.core.values import UNKNOWN, Value, covered, flat, is_symbolic
from gradtrace.analysis.frameworks.common import ASSIGNMENTS, FUNCTION_SCOPES
from gradtrace.analysis.frameworks.tensorflow.events import ForwardArgument, TapeInfo

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
        self.stale: dict = {}  # minimize node -> (name, assignment node, loss function name)
        self.early_sources: dict = {}  # gradient node -> [(source name, its assignment before the tape)]

    def check(self, node: ast.Call, tape: TapeInfo, meant, frame: Frame, value: Value) -> None:
        """A target computed before the tape started recording (and not recomputed inside it)."""
        target = node.args[0] if node.args else None
        with_node = tape.with_node
        scopes = self.plugin.scopes(frame.module)
        if target is None or with_node is None or scopes.contains(with_node, node):
            return
        fn = scopes.enclosing(with_node, FUNCTION_SCOPES)
        if fn is not scopes.enclosing(node, FUNCTION_SCOPES):
            return
        if not isinstance(target, ast.Name):
            self.built_in_call(node, target, with_node, frame, flat(value))
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

    def sources(self, node: ast.Call, tape: TapeInfo, pairs: list, frame: Frame) -> None:
        """A source computed from the variables before the tape started (`x = x0 + x1`, then `with tape:` and
        `tape.gradient(loss, x)`): the tape never recorded it, nor was told to watch it, so its gradient is None."""
        with_node = tape.with_node
        if with_node is None or tape.watch_unknown:
            return
        scopes = self.plugin.scopes(frame.module)
        fn = scopes.enclosing(with_node, FUNCTION_SCOPES)
        if fn is not scopes.enclosing(node, FUNCTION_SCOPES):
            return
        scope = fn if fn is not None else frame.module.source.tree
        for expr, value in pairs:
            if not isinstance(expr, ast.Name) or expr.id in tape.watched or value.kind not in ("tensor", "unknown") \
                    or not value.srcs or "watched" in value.extra or any(is_symbolic(o) for o in value.srcs):
                continue
            bindings = scopes.assignments_to(expr.id, scope)
            if any(with_node.lineno <= stmt.lineno <= (with_node.end_lineno or with_node.lineno) or
                   stmt.lineno > node.lineno for stmt in bindings):
                continue  # (re)computed inside the tape, or later: the tape may have recorded it
            before = [stmt for stmt in bindings if stmt.lineno < with_node.lineno]
            if len(before) != 1 or not isinstance(before[0], ast.Assign) or not self.records_op(before[0], frame) \
                    or not any(self.plugin.trains(o) for o in value.srcs):
                continue
            self.early_sources.setdefault(node, []).append((expr.id, before[0]))

    def before_tape(self, node: ast.Call, with_node: ast.AST, name: str, scope: ast.AST, meant,
                    frame: Frame) -> None:
        """The target is computed in the tape only from values computed before it (`pred = model(x)` first)."""
        scopes = self.plugin.scopes(frame.module)
        if any(n is not with_node for n in scopes.within(BRANCHING, with_node)):
            return  # keep to a straight-line block
        entered = ast.unparse(with_node.items[0].context_expr) if isinstance(with_node, ast.With) else None
        if entered and any(w is not with_node and ast.unparse(w.items[0].context_expr) == entered
                           for w in ast.walk(scope) if isinstance(w, ast.With) and w.items and w.lineno < with_node.lineno):
            return  # a persistent tape entered again (`with tape:` twice): it recorded what the first block computed
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
        value = flat(self.plugin.interp.lookup(first, frame) or UNKNOWN)
        if before is None and frame.summarising and frame.func is not None and first in frame.func.params():
            # an argument: whether the caller computed it from the variables is known once the call is seen
            self.plugin.interp.emit(ForwardArgument(node, frame.module, value, first, name, with_node,
                                                    frame.func.node, meant), frame)
            return
        if before is None or not self.records_op(before, frame) or not self.meant(value, meant):
            return
        self.forward.setdefault(node, (first, before, name, with_node))

    def minimized(self, node: ast.Call, loss: Value, meant, frame: Frame) -> None:
        """`optimizer.minimize(loss_fn, var_list)` runs `loss_fn` under a tape of its own: a tensor it reads from
        outside, computed from the variables before, has no recorded path to them."""
        ref = loss.func
        if ref is None or ref.params() or meant is None:
            return
        semantic = ref.module.source.semantic
        names = ref.module.names
        fn = ref.node
        for n in ast.walk(fn):
            if isinstance(n, ast.Call) and not (names.qualname(n.func) or "").startswith(TF_PREFIXES):
                return  # a model or helper called inside: recorded by minimize's tape
        for n in ast.walk(fn):
            if not isinstance(n, ast.Name) or not isinstance(n.ctx, ast.Load):
                continue
            binding = semantic.binding_of(n)
            if binding is None or binding.kind != "assignment" or binding.scope.node is fn or not isinstance(
                    binding.statement, ast.Assign) or not self.records_op(binding.statement, frame):
                continue
            value = flat(self.plugin.interp.lookup(n.id, frame) or UNKNOWN)
            if value.kind in HELD_KINDS or "watched" in value.extra or not self.meant(value, meant) or not any(
                    self.plugin.trains(o) and not is_symbolic(o) for o in value.srcs):
                continue
            self.stale.setdefault(node, (n.id, binding.statement, getattr(fn, "name", "the loss function")))
            return

    @staticmethod
    def meant(value: Value, meant) -> bool:
        return meant is None or bool(value.srcs & meant) or any(covered(o, meant) for o in value.srcs)

    def argument_seen(self, event: ForwardArgument, frame: Frame) -> None:
        """A `ForwardArgument` reaching a caller: the call site is where the argument's forward pass ran."""
        if event.site is None:
            if frame.func is not None and frame.func.node is event.function:
                return  # recorded by the function itself
            site = self.plugin.interp.call_sites[-1] if self.plugin.interp.call_sites else None
            signature = event.function.args
            params = [a.arg for a in signature.posonlyargs + signature.args]
            if not isinstance(site, ast.Call) or event.param not in params:
                return
            index = params.index(event.param) - (1 if params and params[0] in ("self", "cls") else 0)
            argument = next((k.value for k in site.keywords if k.arg == event.param), None)
            if argument is None and 0 <= index < len(site.args) and not any(
                    isinstance(a, ast.Starred) for a in site.args[: index + 1]):
                argument = site.args[index]
            if argument is None:
                return
            event.site = argument
        if frame.summarising:
            return
        value = flat(event.value)
        if value.kind in HELD_KINDS or "watched" in value.extra or not self.meant(value, event.meant) or not any(
                self.plugin.trains(o) and not is_symbolic(o) for o in value.srcs):
            return
        self.forward.setdefault(event.node, (event.param, event.site, event.target, event.with_node))

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
                            or interp.eval(n.func, frame).kind != "callable") and not self.pure_helper(n.func, frame):
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

    def pure_helper(self, func: ast.expr, frame: Frame, depth: int = 0) -> bool:
        """A function of the file that computes only from its arguments with TensorFlow operations (`def
        total_loss(x, recon, mu, log_var)`): calling it inside the tape records no model of its own."""
        if not isinstance(func, ast.Name) or depth > 3:
            return False
        fn = frame.module.functions.get(func.id)
        if not isinstance(fn, ast.FunctionDef) or any(isinstance(n, (ast.Lambda, ast.FunctionDef, ast.ClassDef))
                                                      for n in ast.walk(fn) if n is not fn):
            return False
        bound = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}
        bound |= {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        names = frame.module.names
        for n in ast.walk(fn):
            if isinstance(n, ast.Call):
                if (names.qualname(n.func) or "").startswith(TF_PREFIXES):
                    continue
                if not self.pure_helper(n.func, frame, depth + 1):
                    return False
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in bound:
                if n.id in frame.module.functions or (names.qualname(n) or "").startswith(TF_PREFIXES):
                    continue
                value = self.plugin.interp.lookup(n.id, frame)
                if value is None or value.kind in HELD_KINDS or flat(value).srcs:
                    return False  # it reads a model or a variable of its own
        return True

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

    def built_in_call(self, node: ast.Call, target: ast.expr, with_node: ast.AST, frame: Frame, value: Value) -> None:
        """`tape.gradient(f(x), x)` / `tape.gradient(-loss, ...)` after the `with` block: the target is computed
        by the gradient call itself, once the tape has stopped recording."""
        if node.lineno <= (with_node.end_lineno or with_node.lineno) or not self.computes(target, frame):
            return
        if value.srcs and value.kind not in NOT_COMPUTED:
            self.after.setdefault(node, (ast.unparse(target), target, with_node))

    def records_op(self, stmt: ast.stmt, frame: Frame) -> bool:
        """Does this assignment compute a new tensor (an operation a tape would have to record)?"""
        return isinstance(stmt, ast.AugAssign) or self.computes(stmt.value, frame)

    def computes(self, value: ast.expr | None, frame: Frame) -> bool:
        """Does this expression run an operation a tape would have to record?"""
        if isinstance(value, (ast.BinOp, ast.UnaryOp)):
            return True
        if not isinstance(value, ast.Call):
            return False
        if (frame.module.names.qualname(value.func) or "").startswith(TF_PREFIXES):
            return True
        if not isinstance(value.func, (ast.Name, ast.Attribute)):
            return False
        return self.plugin.interp.eval(value.func, frame).kind in RECORDED_CALLS
