"""The one abstract interpreter of Python semantics behind every gradient-flow fact.

It runs a file's top level in order, binding names and access paths (`self.fc`) to `Value`s; follows calls
into functions and methods of the file and of the project (through `ModuleContext`), each analysed once per
argument shape and reused through its `Summary`; runs loops to a fixpoint, merges branches, stops a path at
`return`/`raise`/`break`; and records events. Framework plug-ins (`analysis.frameworks`) give meaning to
external calls, framework objects, `with` blocks and decorators. Functions nothing calls are analysed on
their own afterwards, with their parameters standing for what callers may pass.

The cost is bounded by design: one summary per (function, argument shape, framework context), a step
budget linear in the file, and a nesting limit on summaries in progress (recursion and import cycles end in a
widened value, never in the Python stack).
"""

from __future__ import annotations

import ast

from gradtrace.analysis.core.frames import REPEATED, Frame, FunctionRef
from gradtrace.analysis.core.summaries import (
    Substitution,
    Summary,
    SummaryCache,
    literal_parameters,
    shape_of,
    symbolic,
    unlettered,
    widened,
)
from gradtrace.analysis.core.values import (
    EMPTY,
    FALSE,
    NO_LITERAL,
    NONE,
    STR,
    TRUE,
    UNKNOWN,
    Value,
    combine,
    dead_term,
    dedup_cuts,
    flat,
    fresh_constant,
    is_symbolic,
    join,
    known_truth,
    literal_of,
    merge_terms,
    str_value,
)
from gradtrace.analysis.names import dotted
from gradtrace.analysis.skeleton import LAZY_KINDS
from gradtrace.records import replace

CONSUMING_BUILTINS = frozenset({"list", "tuple", "sorted", "set", "frozenset", "sum", "max", "min", "any", "all", "dict"})
MAX_SUMMARY_NESTING = 48  # summaries in progress at once; deeper calls get a widened value
MAX_LOOP_PASSES = 3
MAX_SHAPES_PER_FUNCTION = 6  # summaries of one function for argument shapes told apart; then containers widen
MAX_SHARED_SUMMARIES = 4000  # per imported module version (what the files importing it ask for)
STEPS_PER_NODE = 60  # evaluation budget: linear in the file's size
MIN_STEPS = 200_000
MAX_ITEMS_PER_COMPREHENSION = 8
# summaries of one function in progress at once: a recursive call on a differently shaped argument (the tensors
# inside a tuple of hidden states) gets one summary of its own; deeper, it is widened
MAX_RECURSION = 2  # a comprehension over a few known items follows each one


class BudgetExceeded(Exception):
    pass


BUILTINS = {"float", "int", "bool", "complex", "list", "tuple", "sorted", "reversed", "set", "frozenset", "iter",
            "next", "sum", "max", "min", "abs", "round", "pow", "divmod", "len", "enumerate", "zip", "filter", "map",
            "getattr", "setattr", "hasattr", "isinstance", "issubclass", "callable", "print", "id", "hash", "repr",
            "str", "type", "format", "super", "range", "dict", "vars", "any", "all", "object", "open", "input",
            "property", "staticmethod", "classmethod", "ord", "chr", "bin", "hex", "slice"}
CONTAINER_MUTATORS = {"append", "extend", "insert", "add", "update", "setdefault", "appendleft", "extendleft"}


class Interpreter:
    def __init__(self, root, plugin_classes=(), budget: int | None = None):
        self.root = root  # ModuleContext of the file being checked
        self.plugins = [cls(self) for cls in plugin_classes]
        self.by_name = {p.name: p for p in self.plugins}
        self.plugin_set = tuple(sorted(self.by_name))
        self.events: list = []
        self.globals: dict = {}  # module path -> its top-level environment
        self.summaries = SummaryCache()
        self.active: dict = {}  # summary key -> nesting level (recursion guard)
        self.active_functions: dict = {}  # id(function node) -> summaries of it in progress
        self.returns_in_progress: dict = {}  # id(function node) -> what its innermost summary returned so far
        self.nesting = 0
        self.summary_count = 0
        self.analysed: set = set()  # function nodes run directly or summarised at least once
        self.steps = 0
        self.max_steps = budget or max(MIN_STEPS, STEPS_PER_NODE * _node_count(root))
        self.incomplete = False
        self.error: str | None = None
        self.seq = 0
        self.top_stmt: ast.stmt | None = None
        self._free_globals: dict = {}
        self._exposed: dict = {}
        self.module_frame: Frame | None = None
        # id(node) -> (node, Value): what names and expressions of the file evaluated to, joined over
        # evaluations (inside a function: with its parameters symbolic), for hovers and lenses
        self.observed: dict = {}
        self.symbol_names: dict = {}  # a summary's symbolic root ("$12_0") -> the parameter it stands for
        self.call_sites: list = []  # the calls whose summaries' events are being handed to their callers
        self.branch_statements: dict = {}  # id(if statement) -> it: the arms values are constant on
        self.used_up: dict = {}  # id(assignment of a one-shot iterator) -> the node that iterated it first

    # ================================================================== driving
    def run(self) -> Interpreter:
        module = self.root
        try:
            frame = Frame(module, {}, top=True)
            self.globals[module.path] = frame.env
            self.module_frame = frame
            self.exec_block(module.source.tree.body, frame)
            self.module_frame = None
            self.top_stmt = None
            for plugin in self.plugins:
                plugin.after_module()
        except (BudgetExceeded, RecursionError):
            self.incomplete = True
        except Exception:  # never lose the file's other findings to a gap in the interpreter
            import traceback

            self.incomplete = True
            self.error = traceback.format_exc()
        return self

    def consume(self, value: Value, node: ast.AST, frame: Frame) -> ast.AST | None:
        """`value` iterated at `node` (a loop, `list(...)`, an optimizer built over it): when it is a one-shot
        iterator another node already iterated on a path that can lead here, that node (it is used up: nothing is
        left here). Arms of one branch exclude each other (`SGD(params)` if one flag, `Adam(params)` if not)."""
        made = value.oneshot
        if made is None:
            return None
        first, arms = self.used_up.setdefault(id(made), (node, frame.arms))
        if first is node:
            return None
        taken = dict(arms)
        if any(taken.get(branch, index) != index for branch, index in frame.arms):
            return None
        return first

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise BudgetExceeded

    def emit(self, event, frame: Frame):
        """Record an event in the program's order (or in the summary being built)."""
        if frame.arms:  # which arm of which branch it happened in (a summary's own arms follow the call's)
            event.arms = frame.arms + event.arms
        for plugin in self.plugins:
            event = plugin.emit(event, frame)
            if event is None:
                return None
            if event is REPEATED:  # a summary's record keeps the place, not the copy
                frame.events.append(REPEATED)
                return None
        if frame.events is not None:
            frame.events.append(event)
        else:
            self.seq += 1
            event.seq = self.seq
            self.events.append(event)
        return event

    def run_standalone(self, func: FunctionRef, args: dict, self_value: Value | None = None,
                       state: dict | None = None) -> Frame:
        """Run a function's body directly (not summarised) with the given parameter values."""
        self.analysed.add(id(func.node))
        env = dict(args)
        frame = Frame(func.module, env, func, self_value, dict(state or {}))
        for plugin in self.plugins:
            plugin.enter_function(func, frame, None, None)
        body = func.node.body if isinstance(func.node.body, list) else [ast.Return(func.node.body)]
        self.exec_block(body, frame)
        result = self.result_of(frame)
        for plugin in self.plugins:
            plugin.leave_function(func, frame, result)
        return frame

    # ================================================================== statements
    def exec_block(self, stmts: list, frame: Frame) -> None:
        restore = self.expose_module_branch(frame)
        try:
            for stmt in stmts:
                if frame.dead:
                    return
                self.exec_stmt(stmt, frame)
        finally:
            if restore is not None:
                self.globals[restore[0]] = restore[1]

    def expose_module_branch(self, frame: Frame) -> tuple | None:
        """Module-level code in a branch, loop or try (`if __name__ == "__main__":`) binds names on a copy of
        the module's environment: the functions it calls read the module's globals from that copy."""
        if not frame.top or frame.func is not None or frame.outer is None:
            return None
        path = frame.module.path
        current = self.globals.get(path)
        if current is None or current is frame.env:
            return None
        outer = frame.outer
        while outer is not None and outer.env is not current:
            outer = outer.outer
        if outer is None:
            return None
        self.globals[path] = frame.env
        return path, current

    def exec_stmt(self, stmt: ast.stmt, frame: Frame) -> None:
        self.tick()
        if frame.top and frame.outer is None:
            self.top_stmt = stmt
        elif frame.top:
            self.top_stmt = stmt if self.top_stmt is None else self.top_stmt
        for plugin in self.plugins:
            if plugin.statement(stmt, frame):
                return
        handler = STATEMENTS.get(type(stmt))
        if handler is not None:
            handler(self, stmt, frame)
        else:
            for child in ast.iter_child_nodes(stmt):
                if isinstance(child, ast.expr):
                    self.eval(child, frame)

    def s_Assign(self, stmt: ast.Assign, frame: Frame) -> None:
        value = self.eval(stmt.value, frame)
        if len(stmt.targets) == 1 and _makes_iterator(stmt.value, frame.module):
            value = replace(value, oneshot=stmt)  # `params = model.parameters()`: one pass over it, then empty
        for target in stmt.targets:
            self.assign(target, value, frame, stmt)

    def s_AnnAssign(self, stmt: ast.AnnAssign, frame: Frame) -> None:
        if stmt.value is not None:
            self.assign(stmt.target, self.eval(stmt.value, frame), frame, stmt)

    def s_AugAssign(self, stmt: ast.AugAssign, frame: Frame) -> None:
        target = stmt.target
        old = self.eval(target, frame) if isinstance(target, (ast.Name, ast.Attribute, ast.Subscript)) else UNKNOWN
        value = self.eval(stmt.value, frame)
        result = None
        for plugin in self.plugins:
            result = plugin.augassign(stmt, old, value, frame)
            if result is not None:
                break
        if result is None:
            result = self.binop_value(stmt, stmt.op, old, value, frame)
        if result is False:  # the plug-in stored it itself
            return
        if isinstance(target, ast.Subscript):
            self.store_subscript(target, result, frame, stmt)
            return
        # `x += y` changes the caller's tensor in place (a number or a string is rebound)
        self.store(target, result, frame, mutation=isinstance(target, ast.Attribute) or result.kind == "tensor")

    def s_Expr(self, stmt: ast.Expr, frame: Frame) -> None:
        self.eval(stmt.value, frame)

    def s_Return(self, stmt: ast.Return, frame: Frame) -> None:
        value = self.eval(stmt.value, frame) if stmt.value is not None else NONE
        if frame.arms and fresh_constant(value) and frame.arms[-1][0] in self.branch_statements:
            value = replace(value, constant_on=((frame.arms[-1], stmt, frame.module),))  # `return torch.tensor(0.)` on one path
        frame.returns.append(value)
        frame.dead = True

    def s_Raise(self, stmt: ast.Raise, frame: Frame) -> None:
        if stmt.exc is not None:
            self.eval(stmt.exc, frame)
        frame.dead = True

    def s_Break(self, stmt, frame: Frame) -> None:
        frame.dead = frame.loop_exit = True

    s_Continue = s_Break

    def s_If(self, stmt: ast.If, frame: Frame) -> None:
        test = self.eval(stmt.test, frame)
        self.on_test(stmt.test, test, frame)
        constant = _constant_truth(stmt.test)
        if constant is None:
            constant = self.none_test_truth(stmt.test, frame)
        if constant is None:
            constant = known_truth(test)  # a flag given a literal (`use_checkpoint=True`): the arm that runs
        if constant is True:
            self.exec_block(stmt.body, frame)
            return
        if constant is False:
            self.exec_block(stmt.orelse, frame)
            return
        self.exec_branches([stmt.body, stmt.orelse], frame, stmt, none_refinements(stmt.test, frame))

    def none_test_truth(self, test: ast.expr, frame: Frame) -> bool | None:
        """`if x is None:` / `if x is not None:` on a name known to hold None, or known to hold a number, a string or
        a tensor (a flag given a value at the call: `f_score(..., threshold=0.5)`): the arm that runs."""
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Is, ast.IsNot))
                and isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value is None
                and (isinstance(test.left, ast.Name) or (isinstance(test.left, ast.Attribute)
                                                         and isinstance(test.left.value, ast.Name)))):
            return None
        value = frame.env.get(test.left.id) if isinstance(test.left, ast.Name) else self.eval(test.left, frame)
        if value is None or value.kind not in ("none", "number", "str"):
            return None
        is_none = value.kind == "none"
        return is_none if isinstance(test.ops[0], ast.Is) else not is_none

    def s_Match(self, stmt, frame: Frame) -> None:
        self.eval(stmt.subject, frame)
        self.exec_branches([case.body for case in stmt.cases] + [[]], frame, stmt)

    def exec_branches(self, bodies: list, frame: Frame, node: ast.AST, presets: tuple = ()) -> None:
        """Run each body on its own copy of the frame and join what they leave; `presets[i]` binds names in
        arm i first (what its test says of them: `x` is None in the arm of `if x is None:`)."""
        frame.conditional += 1
        alive: list[Frame] = []
        left_loop = False
        if isinstance(node, ast.If):
            self.branch_statements[id(node)] = node
        for index, body in enumerate(bodies):
            branch = frame.branch()
            branch.arms = frame.arms + ((id(node), index),)
            if index < len(presets):
                branch.env.update(presets[index])
            self.exec_block(body, branch)
            if not branch.dead:
                alive.append(branch)
            elif branch.loop_exit:
                left_loop = True
        frame.conditional -= 1
        if not alive:
            frame.dead = True
            frame.loop_exit = left_loop
            return
        if isinstance(node, ast.If) and len(alive) > 1:
            self.mark_constant_arms(node, alive, frame)
        self.merge_into(frame, alive)

    def mark_constant_arms(self, stmt: ast.If, branches: list, frame: Frame) -> None:
        """A name an arm binds to a fresh constant tensor while another path leaves it carrying gradient (`loss =
        torch.tensor(0.)` when there is nothing to match): the joined value remembers that arm and that line."""
        before = frame.env
        for branch in branches:
            arm = branch.arms[-1]
            for key, value in branch.env.items():
                if value is before.get(key) or not fresh_constant(value) or "." in key:
                    continue
                if not any(other is not branch and (other.env.get(key) or UNKNOWN).srcs for other in branches):
                    continue
                made = _last_binding(stmt.body if arm[1] == 0 else stmt.orelse, key)
                if made is not None:
                    branch.env[key] = replace(value, constant_on=((arm, made, frame.module),))

    def merge_into(self, frame: Frame, branches: list) -> None:
        envs = [b.env for b in branches]
        base = frame.env  # untouched while the branches ran on their copies
        if len(envs) == 1:
            base.clear()
            base.update(envs[0])
        else:
            changed = set()
            get = base.get
            for env in envs:  # only what some branch rebound needs a join
                for key, value in env.items():
                    if get(key) is not value:
                        changed.add(key)
            for key in changed:
                vals = [env[key] for env in envs if key in env]
                first = vals[0]
                if all(v is first for v in vals[1:]):
                    base[key] = first
                else:
                    base[key] = _saved_on_a_path(get(key), vals) or self.merge_values(vals)
        states = [b.state for b in branches]
        frame.state = self.merge_states(frame.state, states)

    def merge_states(self, before: dict, states: list) -> dict:
        """Framework modes after branches: what every branch agrees on, else what any sticky branch set."""
        if len(states) == 1:
            return dict(states[0])
        merged = {}
        for key in set().union(*states):
            vals = [s.get(key) for s in states]
            merged[key] = vals[0] if all(v is vals[0] for v in vals) else before.get(key) if key in before else None
            if merged[key] is None:
                sticky = [v for v in vals if getattr(v, "sticky", False)]
                if sticky:
                    merged[key] = sticky[0]
        return merged

    def merge_values(self, vals: list) -> Value:
        """What a name holds after alternative paths (branches, a conditional expression)."""
        for plugin in self.plugins:
            merged = plugin.merge(vals)
            if merged is not None:
                return merged
        return self.join_keep(vals, paths=True)

    @staticmethod
    def join_keep(vals: list, paths: bool = False) -> Value:
        """Join that keeps module/optimizer identity when every branch agrees on the kind."""
        kinds = {v.kind for v in vals}
        if len(kinds) == 1 and next(iter(kinds)) in ("module", "optimizer", "params", "function", "class", "object"):
            base = vals[-1]
            return replace(base, srcs=frozenset().union(*(v.srcs for v in vals)))
        return join(*vals, paths=paths)

    def s_For(self, stmt, frame: Frame) -> None:
        iterable = self.eval(stmt.iter, frame)
        self.consume(iterable, stmt, frame)
        element = self.element(iterable)
        for plugin in self.plugins:
            marked = getattr(plugin, "loop_element", None)
            if marked is not None:
                element = marked(stmt, iterable, element, frame)
        self.exec_loop(stmt, frame, element, iterable)

    s_AsyncFor = s_For

    def s_While(self, stmt: ast.While, frame: Frame) -> None:
        test = self.eval(stmt.test, frame)
        self.on_test(stmt.test, test, frame)
        self.exec_loop(stmt, frame, None, None)

    def exec_loop(self, stmt, frame: Frame, element: Value | None, iterable: Value | None) -> None:
        # a loop over a model's parameters applies its body to every one of them: not a condition
        counts = iterable is None or iterable.kind not in ("params", "named_params")
        frame.conditional += counts
        entry = frame.branch()
        exposed = self.exposed(stmt)
        passes: list[Frame] = []
        start_env, start_state = frame.env, frame.state
        for plugin in self.plugins:
            plugin.enter_loop(stmt, frame)
        start = self.now(frame)
        for _ in range(MAX_LOOP_PASSES):
            body = frame.branch()
            body.env, body.state = dict(start_env), dict(start_state)
            body.loops = frame.loops + (stmt,)
            if element is not None:
                self.assign(stmt.target, element, body, stmt)
            self.exec_block(stmt.body, body)
            body.dead = body.loop_exit = False
            passes.append(body)
            if len(passes) == 1:
                for plugin in self.plugins:
                    plugin.loop_pass(stmt, start, frame, iterable)
            # another pass sees something new only through values one iteration hands to the next
            if not self.loop_changed(exposed, start_env, body.env) and body.state == start_state:
                break
            if len(passes) == 1:
                for plugin in self.plugins:
                    plugin.loop_carry(stmt, start_env, body.env, frame)
            start_env, start_state = body.env, body.state
        frame.conditional -= counts
        self.merge_into(frame, [entry] + passes)  # the loop may run zero or more times
        self.keep_saved_through_loop(frame, passes)
        if not isinstance(stmt, ast.While) or _constant_truth(stmt.test) is not True:
            self.exec_block(stmt.orelse, frame)

    @staticmethod
    def keep_saved_through_loop(frame: Frame, passes: list) -> None:
        """A tensor every pass of the body leaves saved for backward stays saved after the loop: the loops this
        matters for run over layers and run at least once (the join with the zero-pass entry would drop it)."""
        last = passes[-1].env
        for key, value in last.items():
            if value.saved_by and not frame.env.get(key, value).saved_by \
                    and all(p.env.get(key) is not None and p.env[key].saved_by for p in passes):
                frame.env[key] = replace(frame.env[key], saved_by=value.saved_by)

    def loop_changed(self, exposed: frozenset, before: dict, after: dict) -> bool:
        """Can another pass see anything new? Only if a name the body reads before writing it (a value
        handed from one iteration to the next) now holds something different."""
        for name in exposed:
            new = after.get(name)
            old = before.get(name)
            if new is None or new is old:
                continue
            if old is None or new != old:
                if old is not None and new.srcs == old.srcs and new.cuts == old.cuts and new.kind == old.kind \
                        and new.dtype == old.dtype and new.traced == old.traced:
                    continue
                return True
        return False

    def exposed(self, loop: ast.stmt) -> frozenset:
        found = self._exposed.get(id(loop))
        if found is None:
            found = self._exposed[id(loop)] = read_before_written(loop)
        return found

    def s_With(self, stmt, frame: Frame) -> None:
        tokens = []
        for item in stmt.items:
            value = self.eval(item.context_expr, frame)
            entered = None
            for plugin in self.plugins:
                token = plugin.enter_with(item, value, frame)
                if token is not None:
                    tokens.append((plugin, token))
                    entered = token
                    break
            if item.optional_vars is not None:
                bound = value if entered is None or not isinstance(entered, Value) else entered
                self.assign(item.optional_vars, bound, frame, stmt)
        self.exec_block(stmt.body, frame)
        for plugin, token in reversed(tokens):
            plugin.exit_with(token, frame)

    s_AsyncWith = s_With

    def s_Try(self, stmt, frame: Frame) -> None:
        self.exec_block(stmt.body, frame)
        if not frame.dead:
            self.exec_block(stmt.orelse, frame)
        if stmt.handlers:
            outcomes = [] if frame.dead else [frame.branch()]
            for handler in stmt.handlers:
                branch = frame.branch()  # the exception may come at any point: what the body bound is visible
                branch.dead = branch.loop_exit = False
                if handler.name:
                    branch.env[handler.name] = UNKNOWN
                self.exec_block(handler.body, branch)
                if not branch.dead:
                    outcomes.append(branch)
            if outcomes:
                self.merge_into(frame, outcomes)
                frame.dead = frame.loop_exit = False
            else:
                frame.dead = True
        dead = frame.dead
        frame.dead = False
        self.exec_block(stmt.finalbody, frame)
        frame.dead = frame.dead or dead

    s_TryStar = s_Try

    def s_FunctionDef(self, stmt, frame: Frame) -> None:
        closure = () if frame.func is None and frame.top else (frame.env,) + (frame.func.closure if frame.func else ())
        cls = None
        value = Value("function", func=FunctionRef(stmt, frame.module, cls, closure))
        value = self.decorate(stmt, value, frame)
        frame.env[stmt.name] = value

    s_AsyncFunctionDef = s_FunctionDef

    def decorate(self, stmt, value: Value, frame: Frame) -> Value:
        for dec in reversed(stmt.decorator_list):
            target = dec.func if isinstance(dec, ast.Call) else dec
            qn = frame.module.names.qualname(target)
            new = None
            for plugin in self.plugins:
                new = plugin.decorate(qn, dec, value, frame)
                if new is not None:
                    break
            if new is not None:
                value = new
            elif qn in ("property", "functools.cached_property", "cached_property") and value.func is not None:
                value = replace(value, func=replace(value.func, marks=value.func.marks + (("property",),)))
            elif qn in ("staticmethod", "classmethod") and value.func is not None:
                value = replace(value, func=replace(value.func, marks=value.func.marks + ((qn,),)))
        return value

    def s_ClassDef(self, stmt, frame: Frame) -> None:
        pass

    def s_Delete(self, stmt: ast.Delete, frame: Frame) -> None:
        for target in stmt.targets:
            if isinstance(target, ast.Name):
                frame.env.pop(target.id, None)

    def s_Global(self, stmt, frame: Frame) -> None:
        pass

    s_Nonlocal = s_Global
    s_Import = s_Global
    s_ImportFrom = s_Global
    s_Pass = s_Global

    def s_Assert(self, stmt: ast.Assert, frame: Frame) -> None:
        self.eval(stmt.test, frame)

    # ================================================================== binding
    def assign(self, target: ast.AST, value: Value, frame: Frame, stmt: ast.stmt | None) -> None:
        if isinstance(target, ast.Name):
            for plugin in self.plugins:
                value = plugin.on_bind(target.id, value, frame, stmt)
            self.bind_name(target.id, value, frame)
            if frame.module is self.root:
                self.observe(target, value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            elts = target.elts
            star = next((i for i, e in enumerate(elts) if isinstance(e, ast.Starred)), None)
            parts = self.unpack(value, len(elts), star)
            for elt, part in zip(elts, parts):
                if isinstance(elt, ast.Starred):
                    self.assign(elt.value, part, frame, stmt)
                else:
                    self.assign(elt, part, frame, stmt)
        elif isinstance(target, ast.Attribute):
            self.assign_attribute(target, value, frame, stmt)
        elif isinstance(target, ast.Subscript):
            self.store_subscript(target, value, frame, stmt)
        elif isinstance(target, ast.Starred):
            self.assign(target.value, value, frame, stmt)

    def bind_name(self, name: str, value: Value, frame: Frame) -> None:
        env = frame.env
        if frame.params and name in frame.params:
            frame.mutated.discard(name)  # rebinding a parameter does not change the caller's object
            if value.kind not in ("module", "object", "optimizer"):  # (`model = model.to(device)` is the same one)
                frame.rebound.add(name)  # nor does a later in-place change of the name
        env[name] = value

    def assign_attribute(self, target: ast.Attribute, value: Value, frame: Frame, stmt: ast.stmt | None) -> None:
        owner = self.eval(target.value, frame)
        for plugin in self.plugins:
            if plugin.store_attribute(target, owner, value, frame, stmt):
                return
        key = dotted(target)
        if key:
            if value.pending:
                for plugin in self.plugins:
                    value = plugin.on_bind(key, value, frame, stmt)
            self.store_path(key, value, frame, mutation=True)

    def store_subscript(self, target: ast.Subscript, value: Value, frame: Frame, stmt: ast.stmt | None) -> None:
        base = self.eval(target.value, frame)
        self.eval(target.slice, frame)
        for plugin in self.plugins:
            if plugin.store_subscript(target, base, value, frame, stmt):
                return
        if base.kind in ("container", "dict", "unknown") or base.items is not None:
            key = _const_key(target.slice)
            items, keys = base.items, base.keys
            if items is not None and keys is not None and key is not None:
                pairs = [(k, v) for k, v in zip(keys, items) if k != key] + [(key, value)]
                new = replace(base, kind="dict", keys=tuple(k for k, _ in pairs), items=tuple(v for _, v in pairs),
                              srcs=base.srcs | value.srcs, cuts=dedup_cuts(base.cuts, value.cuts))
            elif items is not None and keys is None and isinstance(key, int) and -len(items) <= key < len(items):
                new_items = list(items)
                new_items[key] = value
                new = replace(base, items=tuple(new_items), srcs=base.srcs | value.srcs,
                              cuts=dedup_cuts(base.cuts, value.cuts))
            else:
                new = Value("container" if base.kind != "dict" else "dict", srcs=base.srcs | value.srcs,
                            cuts=dedup_cuts(base.cuts, value.cuts),
                            items=(join(*(base.items or ()), value),) if base.kind != "dict" else None,
                            opaque=base.opaque, deps=base.deps | value.deps)
            self.store(target.value, new, frame, mutation=True)

    def store(self, target: ast.AST, value: Value, frame: Frame, mutation: bool = False) -> None:
        """Rebind what `target` names (a name or an access path) without the assignment hooks."""
        key = target.id if isinstance(target, ast.Name) else dotted(target)
        if key:
            self.store_path(key, value, frame, mutation)

    def store_path(self, key: str, value: Value, frame: Frame, mutation: bool = False) -> None:
        frame.env[key] = value
        if mutation and frame.params:
            root = key.split(".", 1)[0]
            if root in frame.params and root not in frame.rebound:
                frame.mutated.add(key)

    def mark_saved(self, key: str | None, saved_by: str, frame: Frame) -> None:
        """The tensor at `key` is saved for backward by `saved_by` (a later in-place change breaks backward); a
        function's argument is then saved in its caller's hands too."""
        value = frame.env.get(key) if key else None
        if value is None:
            return
        frame.env[key] = replace(value, saved_by=saved_by)
        if frame.params:
            root = key.split(".", 1)[0]
            if root in frame.params and root not in frame.rebound:
                frame.saved[key] = saved_by

    def unpack(self, value: Value, n: int, star: int | None = None) -> list:
        items = value.items
        if items is not None and star is None and len(items) == n:
            return list(items)
        if items is not None and star is not None and len(items) >= n - 1:
            after = n - star - 1
            head = list(items[:star])
            tail = list(items[len(items) - after:]) if after else []
            middle = items[star:len(items) - after]
            rest = Value("container", items=tuple(middle), srcs=join(*middle).srcs if middle else EMPTY)
            return head + [rest] + tail
        if "values_indices" in value.extra and n == 2:
            return [self.plugin_call("values_of", value), self.plugin_call("indices_of", value)]
        for plugin in self.plugins:
            parts = getattr(plugin, "unpack", None)
            if parts is not None:
                got = parts(value, n)
                if got is not None:
                    return got
        if items:
            element = self.join_keep(list(items))
            return [element] * n
        part = replace(value, items=None, keys=None, name=None, pending=False, extra=(), leaf=False)
        if value.kind in ("module", "optimizer", "function", "object"):
            part = Value("unknown", srcs=value.srcs, cuts=value.cuts, opaque=True, deps=value.deps)
        return [part] * n

    def plugin_call(self, method: str, *args):
        for plugin in self.plugins:
            fn = getattr(plugin, method, None)
            if fn is not None:
                return fn(*args)
        return UNKNOWN

    def element(self, value: Value) -> Value:
        """One element of iterating over `value`."""
        if value.items:
            if value.keys is not None:  # iterating a dict gives its keys
                return STR
            return self.join_keep(list(value.items))
        for plugin in self.plugins:
            elem = getattr(plugin, "element", None)
            if elem is not None:
                got = elem(value)
                if got is not None:
                    return got
        if value.kind == "range":
            return Value("number", dtype="int")
        if value.kind == "str":
            return STR
        if value.kind == "tensor":
            return replace(value, leaf=False, name=None, items=None, extra=())
        return Value("unknown", srcs=value.srcs, cuts=value.cuts, opaque=True, deps=value.deps, fw=value.fw,
                     traced=value.traced, jtraced=value.jtraced)

    def elements(self, value: Value) -> tuple:
        """What iterating over `value` gives: its items when known one by one, else one element for all."""
        if value.items is not None and value.keys is None and "starred" not in value.extra:
            return value.items
        return (self.element(value),)

    @staticmethod
    def container_of(items: list) -> Value:
        merged = join(*items) if items else Value()
        return Value("container", srcs=merged.srcs, cuts=merged.cuts, items=tuple(items), deps=merged.deps,
                     opaque=any(i.opaque for i in items))

    # ================================================================== expressions
    def eval(self, node: ast.AST | None, frame: Frame) -> Value:
        if node is None:
            return NONE
        self.steps += 1
        if self.steps > self.max_steps:
            raise BudgetExceeded
        handler = EXPRESSIONS.get(type(node))
        if handler is None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.eval(child, frame)
            return UNKNOWN
        value = handler(self, node, frame)
        for plugin in self.plugins:
            value = plugin.after_value(node, value, frame)
        if value.srcs and type(node) in GRAPH_NODES and value.kind == "tensor" \
                and len(value.captured) < len(value.srcs):
            value = self.capture(value, frame)
        if type(node) in OBSERVED_NODES and frame.module is self.root:
            self.observe(node, value)
        return value

    def observe(self, node: ast.AST, value: Value) -> None:
        """Remember what `node` evaluated to (tensors and what carries or lost gradient)."""
        if value.kind not in ("tensor", "unknown", "array", "number", "module", "container") \
                or not (value.srcs or value.cuts or value.kind == "tensor"):
            return
        old = self.observed.get(id(node))
        if old is None:
            self.observed[id(node)] = (node, value)
        elif old[1] is not value:
            self.observed[id(node)] = (node, join(old[1], value))

    def now(self, frame: Frame) -> int:
        """The current position in the record events go to (the program's, or the summary's)."""
        return len(frame.events) if frame.events is not None else len(self.events)

    def capture(self, value: Value, frame: Frame) -> Value:
        """An operation just recorded these sources in a graph: note when, for those not noted yet."""
        known = {s for s, _ in value.captured}
        now = self.now(frame)
        new = tuple((s, now) for s in value.srcs if s not in known)
        return replace(value, captured=tuple(sorted(value.captured + new)))

    def e_Constant(self, node: ast.Constant, frame: Frame) -> Value:
        v = node.value
        if isinstance(v, bool):
            return TRUE if v else FALSE
        if isinstance(v, int):
            return Value("number", dtype="int")
        if isinstance(v, (float, complex)):
            return Value("number", dtype="float")
        if v is None:
            return NONE
        return str_value(v) if isinstance(v, str) else STR

    def e_Name(self, node: ast.Name, frame: Frame) -> Value:
        found = self.lookup(node.id, frame)
        return found if found is not None else UNKNOWN

    def lookup(self, name: str, frame: Frame) -> Value | None:
        env = frame.env
        if name in env:
            return env[name]
        if frame.func is not None:
            for outer in frame.func.closure:
                if name in outer:
                    return outer[name]
        module = frame.module
        top = self.globals.get(module.path)
        if top is not None and name in top and top is not env:
            return top[name]
        return self.module_name(name, module)

    def module_name(self, name: str, module) -> Value | None:
        """A name the module defines or imports (functions and classes even before their `def` ran)."""
        if name in module.classes:
            return Value("class", cls=module.classes[name])
        if name in module.functions:
            return self.function_value(module.functions[name], module, None)
        if name in module.names.aliases:
            return Value("external", extra=(module.names.aliases[name],))
        if name in module.names.project_imports:
            cls = module.resolve_class(name)
            if cls is not None:
                return Value("class", cls=cls)
            found = module.resolve_function(name)
            if found is not None:
                return self.function_value(found[0], found[1], None)
            return None
        if name in BUILTINS:
            return Value("builtin", extra=(name,))
        return None

    def function_value(self, node: ast.AST, module, cls) -> Value:
        value = Value("function", func=FunctionRef(node, module, cls))
        if getattr(node, "decorator_list", None):
            frame = Frame(module, {}, top=True)
            value = self.decorate(node, value, frame)
        return value

    def e_Attribute(self, node: ast.Attribute, frame: Frame) -> Value:
        key = dotted(node)
        if key is not None and key in frame.env:
            return frame.env[key]
        names = frame.module.names
        qn = names.qualname(node)
        if qn and names.is_external(qn) and not (isinstance(node.value, ast.Name) and node.value.id in frame.env):
            for plugin in self.plugins:
                value = plugin.external_attribute(qn, node, frame)
                if value is not None:
                    return value
            return Value("external", extra=(qn,))
        base = self.eval(node.value, frame)
        return self.attribute(base, node.attr, node, frame)

    def attribute(self, base: Value, attr: str, node: ast.AST, frame: Frame) -> Value:
        if base.kind == "external" and base.extra:
            return Value("external", extra=(f"{base.extra[0]}.{attr}",))
        for plugin in self.plugins:
            value = plugin.attribute(base, attr, node, frame)
            if value is not None:
                return value
        if base.kind == "object" and (base.extra[:1] == ("object",) or (not base.extra and base.cls is not None)):
            for name, value in base.extra[1] if base.extra else ():
                if name == attr:
                    return value
            info = base.cls
            if info is not None and hasattr(info, "find_method"):
                found = info.find_method(attr)
                if found:
                    return self.method_value(base, found, frame, node)
                return class_constant(info.node, attr)
            return UNKNOWN
        if base.kind == "class" and base.cls is not None and hasattr(base.cls, "find_method"):
            found = base.cls.find_method(attr)
            if found:
                return self.function_value(found[0], found[1].module, found[1])
            return class_constant(base.cls.node, attr)  # `class cfg: finetune = "ckpt.pth"` read as `cfg.finetune`
        if base.kind in ("unknown",) and base.srcs and base.name:
            return Value("unknown", srcs=frozenset({f"{base.name}.{attr}"}), opaque=True, name=f"{base.name}.{attr}",
                         extra=("param",), deps=base.deps)
        if base.kind in ("tensor", "array") and attr in ("T", "mT", "H", "mH", "real", "imag"):
            return replace(base, leaf=False, name=None, saved_by=None, pending=False)
        return Value("unknown", srcs=base.srcs, cuts=base.cuts, opaque=True, deps=base.deps,
                     traced=base.traced, jtraced=base.jtraced) if base.srcs or base.cuts or base.deps else UNKNOWN

    def method_value(self, receiver: Value, found, frame: Frame, node: ast.AST) -> Value:
        fn_node, owner = found
        func = self.function_value(fn_node, owner.module, owner)
        ref = func.func
        if ref is not None and ref.mark("property"):
            return self.call_function(ref, [receiver], {}, frame, node)
        if ref is not None and ref.mark("classmethod"):
            cls_value = Value("class", cls=receiver.cls) if receiver.kind != "class" else receiver
            func = replace(func, kind="method", func=replace(ref, bound=(cls_value,)))
        elif ref is not None and not ref.mark("staticmethod"):
            func = replace(func, kind="method", func=replace(ref, bound=(receiver,)))
        return func

    def e_BinOp(self, node: ast.BinOp, frame: Frame) -> Value:
        left = self.eval(node.left, frame)
        right = self.eval(node.right, frame)
        return self.binop_value(node, node.op, left, right, frame)

    def binop_value(self, node: ast.AST, op: ast.operator, left: Value, right: Value, frame: Frame) -> Value:
        for plugin in self.plugins:
            value = plugin.binop(node, op, left, right, frame)
            if value is not None:
                return value
        kinds = {left.kind, right.kind}
        if kinds <= {"container", "dict"} and isinstance(op, (ast.Add, ast.BitOr)) and (
                left.items is not None or right.items is not None):
            if left.keys is not None or right.keys is not None:
                keys = (left.keys or ()) + (right.keys or ())
                return Value("dict", srcs=left.srcs | right.srcs, cuts=dedup_cuts(left.cuts, right.cuts),
                             items=(left.items or ()) + (right.items or ()), keys=keys)
            items = (left.items or ()) + (right.items or ())
            return Value("container", srcs=left.srcs | right.srcs, cuts=dedup_cuts(left.cuts, right.cuts),
                         items=items or None, opaque=left.opaque or right.opaque, deps=left.deps | right.deps)
        if "container" in kinds and isinstance(op, ast.Mult):
            seq = left if left.kind == "container" else right
            return replace(seq, items=(join(*seq.items),) if seq.items else seq.items)
        if "str" in kinds:
            return STR
        kind = "tensor" if "tensor" in kinds else ("array" if "array" in kinds else (
            "number" if kinds <= {"number"} else "unknown"))
        dtype = _binop_dtype(op, left.dtype, right.dtype)
        return replace(combine(kind, left, right, dtype=dtype), terms=self.sum_terms(node, op, left, right))

    @staticmethod
    def sum_terms(node: ast.AST, op: ast.operator, left: Value, right: Value) -> tuple:
        """The summands a result keeps track of: `a + b` adds candidates; scaling by a constant keeps them; a
        product with something trainable makes them coefficients, not terms."""
        if isinstance(op, (ast.Add, ast.Sub)):
            operands = (node.left, node.right) if isinstance(node, ast.BinOp) else (node.target, node.value)
            return merge_terms(left.terms, right.terms, dead_term(left, operands[0]), dead_term(right, operands[1]))
        if isinstance(op, (ast.Mult, ast.Div)):
            return merge_terms(left.terms if not right.srcs else (), right.terms if not left.srcs else ())
        return ()

    def e_UnaryOp(self, node: ast.UnaryOp, frame: Frame) -> Value:
        value = self.eval(node.operand, frame)
        if isinstance(node.op, ast.Not):
            self.on_test(node.operand, value, frame)
            constant = known_truth(value)
            if constant is not None and not value.cuts:
                return FALSE if constant else TRUE
            return Value("number", dtype="bool", cuts=value.cuts, deps=value.deps)
        return replace(value, leaf=False, name=None, pending=False, saved_by=None, items=None, keys=None,
                       extra=tuple(e for e in value.extra if e != "values_indices"))

    def e_BoolOp(self, node: ast.BoolOp, frame: Frame) -> Value:
        values = []
        for sub in node.values:
            v = self.eval(sub, frame)
            values.append(v)
        for sub, v in zip(node.values[:-1], values[:-1]):
            self.on_test(sub, v, frame)
        return join(*values)

    def e_Compare(self, node: ast.Compare, frame: Frame) -> Value:
        values = [self.eval(node.left, frame)] + [self.eval(c, frame) for c in node.comparators]
        decided = literal_comparison(node.ops, values)
        if decided is not None:
            return TRUE if decided else FALSE
        for plugin in self.plugins:
            value = plugin.compare(node, values, frame)
            if value is not None:
                return value
        merged = join(*values)
        return Value("number", dtype="bool", cuts=merged.cuts, deps=merged.deps)

    def e_IfExp(self, node: ast.IfExp, frame: Frame) -> Value:
        test = self.eval(node.test, frame)
        self.on_test(node.test, test, frame)
        constant = known_truth(test)
        if constant is not None:
            return self.eval(node.body if constant else node.orelse, frame)
        return self.merge_values([self.eval(node.body, frame), self.eval(node.orelse, frame)])

    def on_test(self, node: ast.AST, value: Value, frame: Frame) -> None:
        for plugin in self.plugins:
            plugin.test(node, value, frame)

    def e_Subscript(self, node: ast.Subscript, frame: Frame) -> Value:
        base = self.eval(node.value, frame)
        index = self.eval(node.slice, frame)
        for plugin in self.plugins:
            value = plugin.subscript(node, base, index, frame)
            if value is not None:
                return value
        key = _const_key(node.slice)
        if base.items is not None:
            if key is not None:
                item = base.item(key)
                if item is not None:
                    return item
            if isinstance(node.slice, ast.Slice) and base.keys is None:
                return replace(base, items=(join(*base.items),) if base.items else ())
            if base.items:
                return self.join_keep(list(base.items))
        if base.kind in ("str", "number"):
            return base
        if base.kind == "tensor":
            index_cuts = tuple(c for c in index.cuts if c not in base.cuts)
            return replace(base, leaf=False, name=None, pending=False, saved_by=None, items=None,
                           extra=tuple(e for e in base.extra if e != "values_indices"),
                           cuts=dedup_cuts(base.cuts, index_cuts), deps=base.deps | index.deps)
        if base.kind in ("params", "container"):
            return self.element(base)
        return Value("unknown", srcs=base.srcs, cuts=dedup_cuts(base.cuts, index.cuts), opaque=True,
                     deps=base.deps | index.deps, traced=base.traced, jtraced=base.jtraced, fw=base.fw)

    def e_Slice(self, node: ast.Slice, frame: Frame) -> Value:
        parts = [self.eval(p, frame) for p in (node.lower, node.upper, node.step) if p is not None]
        return Value("slice", cuts=join(*parts).cuts if parts else (), deps=join(*parts).deps if parts else EMPTY)

    def e_Tuple(self, node, frame: Frame) -> Value:
        items: list = []
        for e in node.elts:
            if isinstance(e, ast.Starred):
                inner = self.eval(e.value, frame)
                if inner.items is not None and inner.keys is None:
                    items.extend(inner.items)
                else:
                    items.append(self.element(inner))
            else:
                items.append(self.eval(e, frame))
        merged = join(*items) if items else Value()
        return Value("container", srcs=merged.srcs, cuts=merged.cuts, items=tuple(items),
                     opaque=any(i.opaque for i in items), deps=merged.deps)

    e_List = e_Tuple
    e_Set = e_Tuple

    def e_Dict(self, node: ast.Dict, frame: Frame) -> Value:
        keys: list = []
        items: list = []
        known = True
        for k, v in zip(node.keys, node.values):
            val = self.eval(v, frame)
            if k is None:  # {**other}
                if val.keys is not None and val.items is not None:
                    keys.extend(val.keys)
                    items.extend(val.items)
                else:
                    known = False
                    items.append(flat(val))
                continue
            self.eval(k, frame)
            key = _const_key(k)
            if key is None:
                known = False
            keys.append(key)
            items.append(val)
        merged = join(*items) if items else Value()
        return Value("dict", srcs=merged.srcs, cuts=merged.cuts, items=tuple(items),
                     keys=tuple(keys) if known else None, opaque=any(i.opaque for i in items), deps=merged.deps)

    def comprehension(self, generators, elts, frame: Frame, first_iterable: Value | None = None) -> list:
        inner = frame.branch()
        for index, gen in enumerate(generators):
            iterable = first_iterable if index == 0 and first_iterable is not None else self.eval(gen.iter, inner)
            element = self.element(iterable)
            self.assign(gen.target, element, inner, None)
            for cond in gen.ifs:
                self.on_test(cond, self.eval(cond, inner), inner)
        return [self.eval(e, inner) for e in elts]

    def e_ListComp(self, node, frame: Frame) -> Value:
        iterable = self.eval(node.generators[0].iter, frame)  # evaluated once, whichever way the rest goes
        self.consume(iterable, node, frame)
        per_item = self.comprehension_per_item(node, iterable, frame)
        if per_item is not None:
            return self.container_of(per_item)
        values = self.comprehension(node.generators, [node.elt], frame, iterable)
        item = values[-1] if values else UNKNOWN
        return Value("container", srcs=item.srcs, cuts=item.cuts, items=(item,), opaque=item.opaque, deps=item.deps)

    def comprehension_per_item(self, node, iterable: Value, frame: Frame) -> list | None:
        """`[f(v) for v in (a, b, c)]` over a few known items, with no condition: one element per item, each
        from its own item (`[loss for loss in losses.values()]` keeps which term is which)."""
        if len(node.generators) != 1 or node.generators[0].ifs or node.generators[0].is_async:
            return None
        gen = node.generators[0]
        if iterable.items is None or iterable.keys is not None or "starred" in iterable.extra \
                or not 1 < len(iterable.items) <= MAX_ITEMS_PER_COMPREHENSION:
            return None
        out = []
        for item in iterable.items:
            inner = frame.branch()
            self.assign(gen.target, item, inner, None)
            out.append(self.eval(node.elt, inner))
        return out

    e_SetComp = e_ListComp
    e_GeneratorExp = e_ListComp

    def e_DictComp(self, node: ast.DictComp, frame: Frame) -> Value:
        key, value = self.comprehension(node.generators, [node.key, node.value], frame)
        return Value("dict", srcs=value.srcs, cuts=value.cuts, items=(value,), opaque=value.opaque, deps=value.deps)

    def e_Lambda(self, node: ast.Lambda, frame: Frame) -> Value:
        closure = () if frame.func is None and frame.top else (frame.env,) + (frame.func.closure if frame.func else ())
        return Value("function", func=FunctionRef(node, frame.module, None, closure))

    def e_Starred(self, node: ast.Starred, frame: Frame) -> Value:
        return self.eval(node.value, frame)

    def e_NamedExpr(self, node: ast.NamedExpr, frame: Frame) -> Value:
        value = self.eval(node.value, frame)
        self.assign(node.target, value, frame, None)
        return value

    def e_JoinedStr(self, node: ast.JoinedStr, frame: Frame) -> Value:
        for v in node.values:
            if isinstance(v, ast.FormattedValue):
                self.eval(v.value, frame)
        return STR

    def e_Await(self, node, frame: Frame) -> Value:
        return self.eval(node.value, frame)

    def e_Yield(self, node, frame: Frame) -> Value:
        value = self.eval(node.value, frame) if node.value is not None else NONE
        frame.yields.append(value)
        return UNKNOWN  # what `send()` passes in

    def e_YieldFrom(self, node, frame: Frame) -> Value:
        frame.yields.append(self.element(self.eval(node.value, frame)))
        return UNKNOWN

    # ================================================================== calls
    def e_Call(self, node: ast.Call, frame: Frame) -> Value:
        func = node.func
        if isinstance(func, ast.Attribute):
            names = frame.module.names
            qn = names.qualname(func)
            if qn and names.is_external(qn) and not (isinstance(func.value, ast.Name) and func.value.id in frame.env):
                return self.call_external(qn, node, frame)
            key = dotted(func)
            if key and key in frame.env:
                return self.call_value(frame.env[key], node, frame)
            receiver = self.eval(func.value, frame)
            return self.call_method(receiver, func.attr, node, frame)
        callee = self.eval(func, frame)
        return self.call_value(callee, node, frame)

    def eval_args(self, node: ast.Call, frame: Frame) -> tuple[list, dict]:
        preset = frame.preset_args
        if preset is not None and preset[0] is node:  # `map(torch.detach, pair)`: the element, not the call's
            frame.preset_args = None
            return list(preset[1]), dict(preset[2])
        args: list = []
        for a in node.args:
            value = self.eval(a, frame)
            if isinstance(a, ast.Starred):
                if value.items is not None and value.keys is None:
                    args.extend(value.items)
                else:
                    args.append(replace(self.element(value), extra=("starred",)))
            else:
                args.append(value)
        kwargs = {}
        for k in node.keywords:
            value = self.eval(k.value, frame)
            if k.arg:
                kwargs[k.arg] = value
            elif value.keys is not None and value.items is not None:
                for key, item in zip(value.keys, value.items):
                    if isinstance(key, str):
                        kwargs[key] = item
        return args, kwargs

    def call_external(self, qn: str, node: ast.Call, frame: Frame) -> Value:
        for plugin in self.plugins:
            value = plugin.external_call(qn, node, frame)
            if value is not None:
                return value
        if qn in ("functools.partial", "partial"):
            args, kwargs = self.eval_args(node, frame)
            return self.make_partial(args, kwargs)
        if qn in ("itertools.chain", "itertools.chain.from_iterable"):
            args, _ = self.eval_args(node, frame)
            if qn.endswith("from_iterable"):
                args = list(self.elements(args[0])) if args else []
            return self.container_of([item for a in args for item in self.elements(a)])
        if qn in ("copy.copy", "copy.deepcopy") and node.args:
            args, _ = self.eval_args(node, frame)
            return args[0]
        args, kwargs = self.eval_args(node, frame)
        merged = combine("unknown", *args, *kwargs.values())
        return replace(merged, opaque=True)

    def make_partial(self, args: list, kwargs: dict) -> Value:
        if not args:
            return UNKNOWN
        inner = args[0]
        if inner.func is not None and inner.kind in ("function", "method"):
            ref = inner.func
            return replace(inner, kind="function", func=replace(
                ref, bound=ref.bound + tuple(args[1:]), bound_kw=ref.bound_kw + tuple(kwargs.items())))
        return Value("partial", ref=(inner, tuple(args[1:]), tuple(kwargs.items())))

    def call_value(self, callee: Value, node: ast.Call, frame: Frame, args=None, kwargs=None) -> Value:
        if callee.kind == "external" and callee.extra:
            return self.call_external(callee.extra[0], node, frame)
        if callee.kind == "builtin" and callee.extra:
            return self.call_builtin(callee.extra[0], node, frame)
        if args is None:
            args, kwargs = self.eval_args(node, frame)
        kwargs = kwargs or {}
        if callee.kind in ("function", "method") and callee.func is not None:
            ref = callee.func
            return self.call_function(ref, list(ref.bound) + list(args), {**dict(ref.bound_kw), **kwargs}, frame,
                                      node)
        if callee.kind == "class" and callee.cls is not None:
            return self.instantiate(callee.cls, node, frame, args, kwargs)
        for plugin in self.plugins:
            value = plugin.call_object(callee, node, frame, args, kwargs)
            if value is not None:
                return value
        if callee.kind == "object" and callee.cls is not None and hasattr(callee.cls, "find_method"):
            found = callee.cls.find_method("__call__")
            if found:
                method = self.method_value(callee, found, frame, node)
                return self.call_value(method, node, frame, args, kwargs)
        if callee.kind == "partial" and callee.ref:
            inner, bound, bound_kw = callee.ref
            return self.call_value(inner, node, frame, list(bound) + list(args), {**dict(bound_kw), **kwargs})
        merged = combine("unknown", callee if callee.srcs else Value(), *args, *kwargs.values())
        return replace(merged, opaque=True)

    def call_method(self, receiver: Value, method: str, node: ast.Call, frame: Frame) -> Value:
        if receiver.kind == "external" and receiver.extra:
            return self.call_external(f"{receiver.extra[0]}.{method}", node, frame)
        if receiver.kind == "super":
            found = self.super_method(frame, method)
            if found is not None:  # a project base class's method, on our own self
                self_value = frame.self_value if frame.self_value is not None else UNKNOWN
                return self.call_value(self.method_value(self_value, found, frame, node), node, frame)
        info = receiver.cls
        if receiver.kind == "object" and isinstance(node.func, ast.Attribute):
            receiver = self.object_now(receiver, dotted(node.func.value), frame)
        elif receiver.kind == "module" and isinstance(node.func, ast.Attribute):
            receiver = self.module_now(receiver, dotted(node.func.value), frame)
        if receiver.kind in ("object", "module", "class") and info is not None and hasattr(info, "find_method"):
            if receiver.kind == "object" and receiver.extra and receiver.extra[0] == "object":
                attrs = dict(receiver.extra[1])
                if method in attrs:
                    return self.call_value(attrs[method], node, frame)
            found = info.find_method(method)
            if found is not None and not (receiver.kind == "module" and method in ("parameters", "named_parameters")):
                callee = self.method_value(receiver, found, frame, node) if receiver.kind != "class" else \
                    self.function_value(found[0], found[1].module, found[1])
                return self.call_value(callee, node, frame)
            if found is None and receiver.kind != "class" and info.find_attr(method) is not None:
                # an attribute holding something callable: a layer, a loss, a function
                return self.call_value(self.attribute(receiver, method, node.func, frame), node, frame)
        args, kwargs = self.eval_args(node, frame)
        for plugin in self.plugins:
            value = plugin.method(receiver, method, node, frame, args, kwargs)
            if value is not None:
                return value
        return self.generic_method(receiver, method, node, frame, args, kwargs)

    @staticmethod
    def super_method(frame: Frame, method: str):
        """`super().method`: the method as the current class's project bases define it, or None."""
        cls = frame.func.cls if frame.func is not None else None
        if cls is None or not hasattr(cls, "bases"):
            return None
        for base in cls.bases:
            parent = cls.module.resolve_class(base)
            if parent is not None and parent is not cls:
                found = parent.find_method(method)
                if found is not None:
                    return found
        return None

    @staticmethod
    def object_now(receiver: Value, path: str | None, frame: Frame) -> Value:
        """An object with the attributes this frame has set on it so far (`self.x = ...` in `__init__`)."""
        if not path:
            return receiver
        prefix = path + "."
        own = {k[len(prefix):]: v for k, v in frame.env.items() if k.startswith(prefix) and "." not in k[len(prefix):]}
        if not own:
            return receiver
        attrs = dict(receiver.extra[1]) if receiver.extra and receiver.extra[0] == "object" else {}
        attrs.update(own)
        return replace(receiver, extra=("object", tuple(sorted(attrs.items(), key=lambda kv: kv[0]))))

    @staticmethod
    def module_now(receiver: Value, path: str | None, frame: Frame) -> Value:
        """A module with the tensors this frame has set on it so far that carry gradient (`self.prototypes` made a
        leaf by `requires_grad_()` in `forward`): its methods read those, not what its constructor stored."""
        if not path:
            return receiver
        prefix = path + "."
        own = {k[len(prefix):]: v for k, v in frame.env.items() if k.startswith(prefix) and v.srcs
               and v.kind in ("tensor", "container") and "." not in k[len(prefix):]
               and not any(is_symbolic(s) for s in v.srcs)}  # (what a helper's arguments carry stays with it)
        if not own:
            return receiver
        extra, given = [], {}
        for e in receiver.extra:
            if isinstance(e, tuple) and e[:1] == ("given",):
                given.update(e[1])
            else:
                extra.append(e)
        given.update(own)
        return replace(receiver, extra=tuple(extra) + (("given", tuple(sorted(given.items(), key=lambda kv: kv[0]))),))

    def generic_method(self, receiver: Value, method: str, node: ast.Call, frame: Frame, args, kwargs) -> Value:
        if method in CONTAINER_MUTATORS and receiver.kind in ("container", "dict", "unknown") and isinstance(
                node.func, ast.Attribute) and isinstance(node.func.value, (ast.Name, ast.Attribute)):
            added = list(args) + list(kwargs.values())
            if method in ("extend", "update"):
                added = [self.element(a) if a.keys is None else a for a in added]
                if method == "update" and args and args[0].keys is not None and receiver.keys is not None:
                    pairs = dict(zip(receiver.keys, receiver.items or ()))
                    pairs.update(zip(args[0].keys, args[0].items))
                    new = replace(receiver, keys=tuple(pairs), items=tuple(pairs.values()),
                                  srcs=receiver.srcs | args[0].srcs, cuts=dedup_cuts(receiver.cuts, args[0].cuts))
                    self.store(node.func.value, new, frame, mutation=True)
                    return NONE
            if method == "setdefault" and len(args) == 2:
                added = [args[1]]
            if method == "insert" and len(args) == 2:
                added = [args[1]]
            kind = "container" if receiver.kind == "unknown" else receiver.kind
            items = (receiver.items or ()) + tuple(added) if receiver.keys is None and method != "setdefault" else None
            new = Value(kind if items is not None else "container", srcs=receiver.srcs.union(*(a.srcs for a in added)),
                        cuts=dedup_cuts(receiver.cuts, *(a.cuts for a in added)), items=items,
                        opaque=receiver.opaque or any(a.opaque for a in added),
                        deps=receiver.deps.union(*(a.deps for a in added)))
            self.store(node.func.value, new, frame, mutation=True)
            return args[1] if method == "setdefault" and len(args) == 2 else NONE
        if receiver.kind in ("container", "dict"):
            if method in ("values", "copy"):
                return receiver if method == "copy" or receiver.keys is None else Value(
                    "container", srcs=receiver.srcs, cuts=receiver.cuts, items=receiver.items, deps=receiver.deps)
            if method == "items" and receiver.items is not None:
                pairs = tuple(Value("container", items=(STR, v), srcs=v.srcs, cuts=v.cuts) for v in receiver.items)
                return Value("container", srcs=receiver.srcs, cuts=receiver.cuts, items=pairs or None,
                             deps=receiver.deps)
            if method == "keys":
                return Value("container", items=(STR,))
            if method in ("pop", "get", "popleft", "__getitem__"):
                if args and receiver.keys is not None:
                    item = receiver.item(_literal(node.args[0]) if node.args else None)
                    if item is not None:
                        return item
                return self.element(receiver) if receiver.keys is None else (
                    join(*receiver.items) if receiver.items else UNKNOWN)
            if method in ("index", "count"):
                return Value("number", dtype="int")
        if receiver.kind == "str":
            return STR if method not in ("startswith", "endswith", "isdigit", "isalpha") else Value(
                "number", dtype="bool")
        merged = combine("unknown", receiver, *args, *kwargs.values())
        return replace(merged, opaque=True)

    def call_builtin(self, name: str, node: ast.Call, frame: Frame) -> Value:
        args, kwargs = self.eval_args(node, frame)
        if args and name in CONSUMING_BUILTINS:
            self.consume(args[0], node, frame)
        for plugin in self.plugins:
            value = plugin.builtin(name, node, frame, args, kwargs)
            if value is not None:
                return value
        first = args[0] if args else Value()
        if name in ("float", "int", "bool", "complex"):
            dtype = {"float": "float", "complex": "float", "int": "int", "bool": "bool"}[name]
            return Value("number", dtype=dtype, cuts=first.cuts, deps=first.deps)
        if name in ("list", "tuple", "sorted", "reversed", "set", "frozenset", "iter"):
            if first.items is not None and first.keys is None:
                return Value("container", srcs=first.srcs, cuts=first.cuts, items=first.items, opaque=first.opaque,
                             deps=first.deps)
            return Value("container", srcs=first.srcs, cuts=first.cuts, items=(self.element(first),),
                         opaque=first.opaque, deps=first.deps)
        if name == "dict":
            # keys known one by one: `dict(a=x)`, `dict(known, b=y)`; not `dict(pairs_or_mapping, b=y)`
            if (first.keys is not None or not args) and (first.keys is not None or kwargs):
                keys = (first.keys or ()) + tuple(kwargs)
                items = (first.items or ()) + tuple(kwargs.values())
                merged = join(*items) if items else Value()
                return Value("dict", keys=keys, items=items, srcs=merged.srcs, cuts=merged.cuts, deps=merged.deps)
            merged = join(first, *kwargs.values())
            return Value("dict", srcs=merged.srcs, cuts=merged.cuts, deps=merged.deps)
        if name == "next":
            return self.element(first)
        if name in ("sum", "max", "min", "abs", "round", "pow", "divmod"):
            merged = join(*args)
            if name in ("sum", "max", "min") and first.items is not None:
                merged = join(*first.items, *args[1:]) if first.items else Value()
                if name == "sum":
                    merged = replace(merged, terms=merge_terms(merged.terms, *(dead_term(i, node)
                                                                             for i in first.items)))
            elif name in ("sum", "max", "min") and first.kind in ("container", "params"):
                merged = join(self.element(first), *args[1:])
            kind = merged.kind if merged.kind not in ("container", "dict") else "unknown"
            return replace(merged, kind=kind, items=None, keys=None, leaf=False, name=None, pending=False)
        if name == "range":
            return Value("range", cuts=join(*args).cuts if args else ())
        if name in ("len", "id", "hash", "ord"):
            return Value("number", dtype="int")
        if name == "enumerate":
            element = self.element(first)
            return Value("container", items=(Value("container", items=(Value("number", dtype="int"), element),
                                                   opaque=element.opaque),),
                         srcs=first.srcs, cuts=first.cuts, opaque=first.opaque, deps=first.deps)
        if name == "zip":
            elements = tuple(self.element(a) for a in args)
            pair = Value("container", items=elements, opaque=any(e.opaque for e in elements))
            merged = join(*args) if args else Value()
            return Value("container", items=(pair,), srcs=merged.srcs, opaque=pair.opaque, deps=merged.deps)
        if name == "filter" and len(args) == 2:
            return args[1] if args[1].kind == "params" else Value("container", srcs=args[1].srcs,
                                                                  items=(self.element(args[1]),), deps=args[1].deps)
        if name == "map" and len(args) >= 2:
            fn = args[0]
            elements = [self.element(a) for a in args[1:]]
            if fn.kind in ("function", "method") and fn.func is not None:
                out = self.call_function(fn.func, list(fn.func.bound) + elements, dict(fn.func.bound_kw), frame, node)
            elif fn.kind in ("builtin", "external", "class"):
                frame.preset_args = (node, elements, {})
                out = self.call_value(fn, node, frame, elements, {})
                frame.preset_args = None
            else:
                out = combine("unknown", *elements)
            return Value("container", srcs=out.srcs, cuts=out.cuts, items=(out,), opaque=True, deps=out.deps)
        if name == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(
                node.args[1].value, str):
            return self.attribute(first, node.args[1].value, node, frame)
        if name == "setattr" and len(node.args) >= 3 and isinstance(node.args[1], ast.Constant) and isinstance(
                node.args[1].value, str):
            base = dotted(node.args[0])
            if base:
                self.store_path(f"{base}.{node.args[1].value}", args[2], frame, mutation=True)
            return NONE
        if name in ("isinstance", "issubclass", "hasattr", "callable", "any", "all"):
            return Value("number", dtype="bool")
        if name in ("print", "repr", "str", "format", "type", "input", "open", "vars", "bin", "hex", "chr"):
            return STR if name in ("repr", "str", "format", "bin", "hex", "chr") else Value("other")
        if name == "super":
            return Value("super")
        if name in ("property", "staticmethod", "classmethod"):
            return first
        merged = combine("unknown", *args, *kwargs.values())
        return replace(merged, opaque=True)

    # ------------------------------------------------------------------ classes
    def instantiate(self, cls, node: ast.Call, frame: Frame, args: list, kwargs: dict) -> Value:
        for plugin in self.plugins:
            value = plugin.instantiate(cls, node, frame, args, kwargs)
            if value is not None:
                return value
        obj = Value("object", cls=cls, pending=True)
        attrs = self.construct(cls, obj, node, frame, args, kwargs)
        return replace(obj, extra=("object", tuple(sorted(attrs.items()))))

    def construct(self, cls, obj: Value, node: ast.AST, frame: Frame, args: list, kwargs: dict) -> dict:
        """Run `__init__` with `obj` as self; the attributes it set (with the caller's values)."""
        found = cls.find_method("__init__") if hasattr(cls, "find_method") else None
        if not found:
            return {}
        init = FunctionRef(found[0], found[1].module, found[1])
        effects: dict = {}
        self.call_function(init, [obj] + list(args), kwargs, frame, node, self_effects=effects)
        return {path: value for path, value in effects.items() if path and "." not in path}

    # ------------------------------------------------------------------ functions and summaries
    def call_function(self, func: FunctionRef, args: list, kwargs: dict, frame: Frame, node: ast.AST | None,
                      self_effects: dict | None = None) -> Value:
        fn = func.node
        params, actuals = self.bind_arguments(func, args, kwargs, frame)
        if any(v.kind == "str" and v.extra for v in actuals):
            deciding = literal_parameters(fn)
            actuals = [v if p in deciding else unlettered(v) for p, v in zip(params, actuals)]
        key = self.summary_key(func, actuals, frame, node)
        cache = self.summary_cache(func)
        summary = cache.get(key)
        if summary is None and cache.shapes.get(id(fn), 0) >= MAX_SHAPES_PER_FUNCTION:
            # called with yet another shape of configuration (a model zoo's entry points, each with its own
            # kwargs): the containers of plain values are taken in bulk, so the calls share one summary
            actuals = [widened(v) for v in actuals]
            key = self.summary_key(func, actuals, frame, node)
            summary = cache.get(key)
        if summary is None:
            # a call of a function whose summary is in progress is recursion, whatever its arguments' shapes (a
            # path that grows at each level would otherwise give every level a shape, and a summary, of its own)
            if key in self.active or self.active_functions.get(id(fn), 0) >= MAX_RECURSION \
                    or self.nesting >= MAX_SUMMARY_NESTING:
                so_far = self.returns_in_progress.get(id(fn))
                if so_far and all(not r.srcs and (r.cuts or not r.opaque) for r in so_far):
                    # every other path returns a value cut from the graph (`return h.detach()` beside
                    # `return tuple(repackage(v) for v in h)`): so does the recursive one
                    return replace(join(*so_far), name=None, pending=False)
                merged = join(*actuals) if actuals else Value()
                return Value("unknown", srcs=merged.srcs, cuts=merged.cuts, opaque=True, deps=merged.deps)
            summary = self.summarise(func, params, actuals, frame, key, node)
        return self.instantiate_summary(summary, func, params, actuals, frame, node, self_effects, fn)

    def summary_cache(self, func: FunctionRef) -> dict:
        """Summaries of the checked file live as long as this run; those of an imported module live with
        that module's parsed version, shared by every file and keystroke that imports it."""
        module = func.module
        if module is self.root:
            return self.summaries
        cache = getattr(module, "summaries", None)
        if cache is None or len(cache) > MAX_SHARED_SUMMARIES:
            cache = module.summaries = SummaryCache()
        return cache

    def bind_arguments(self, func: FunctionRef, args: list, kwargs: dict, frame: Frame) -> tuple[list, dict]:
        """Parameter names in order, and the caller's value for each (in the same order)."""
        fargs = func.node.args
        positional = fargs.posonlyargs + fargs.args
        params: list[str] = []
        values: list[Value] = []
        starred = any("starred" in a.extra for a in args)
        for index, a in enumerate(positional):
            if index < len(args) and not (starred and "starred" in args[index].extra):
                value = args[index]
            elif a.arg in kwargs:
                value = kwargs[a.arg]
            elif starred:
                value = replace(next(a for a in args if "starred" in a.extra), extra=())
            else:
                default_index = index - (len(positional) - len(fargs.defaults))
                if 0 <= default_index < len(fargs.defaults):
                    value = self.eval(fargs.defaults[default_index], Frame(func.module, {}))
                else:
                    value = UNKNOWN
            if value.pending:  # an unnamed model passed inline (`train(Net(), data)`) takes the parameter's name
                for plugin in self.plugins:
                    value = plugin.on_bind(a.arg, value, frame, None)
            params.append(a.arg)
            values.append(value)
        for a, default in zip(fargs.kwonlyargs, fargs.kw_defaults):
            params.append(a.arg)
            values.append(kwargs.get(a.arg, self.eval(default, Frame(func.module, {})) if default else UNKNOWN))
        if fargs.vararg:
            rest = [a for a in args[len(positional):]]
            params.append(fargs.vararg.arg)
            merged = join(*rest) if rest else Value()
            values.append(Value("container", srcs=merged.srcs, cuts=merged.cuts, items=tuple(rest), deps=merged.deps))
        if fargs.kwarg:
            named_params = {a.arg for a in positional + fargs.kwonlyargs}
            extra = {k: v for k, v in kwargs.items() if k not in named_params}
            params.append(fargs.kwarg.arg)
            merged = join(*extra.values()) if extra else Value()
            values.append(Value("dict", keys=tuple(extra), items=tuple(extra.values()), srcs=merged.srcs,
                                cuts=merged.cuts, deps=merged.deps))
        return params, values

    def summary_key(self, func: FunctionRef, actuals: dict, frame: Frame, node: ast.AST | None) -> tuple:
        context = tuple(p.context_key(frame, func, node) for p in self.plugins)
        free = self.free_globals(func)
        top = self.globals.get(func.module.path)
        global_ids = tuple(id(top.get(n)) for n in free) if top and free else ()
        return (id(func.node), tuple(id(env) for env in func.closure), context, global_ids, self.plugin_set,
                tuple(shape_of(v) for v in actuals))

    def free_globals(self, func: FunctionRef) -> tuple:
        """Module-level names the function reads that module-level statements rebind (not defs)."""
        return func.module.global_reads(func.node)

    def summarise(self, func: FunctionRef, params: list, actuals: dict, caller: Frame, key,
                  call_node: ast.AST | None) -> Summary:
        fn = func.node
        self.analysed.add(id(fn))
        self.summary_count += 1
        roots = [f"${self.summary_count}_{i}" for i in range(len(params))]  # unique: a summary inside a
        # summary meets the outer one's symbols as names it leaves alone
        self.symbol_names.update(zip(roots, params))
        env = {name: symbolic(actuals[i], roots[i]) for i, name in enumerate(params)}
        summary = Summary(UNKNOWN, roots=roots)
        frame = Frame(func.module, env, func, env.get(params[0]) if params and func.cls is not None else None,
                      {}, [], 0, False, summary.events, tuple(params))
        self.active[key] = self.nesting
        self.active_functions[id(fn)] = self.active_functions.get(id(fn), 0) + 1
        outer_returns = self.returns_in_progress.get(id(fn))
        self.returns_in_progress[id(fn)] = frame.returns
        self.nesting += 1
        try:
            for plugin in self.plugins:
                plugin.enter_function(func, frame, caller, call_node)
            if isinstance(fn, ast.Lambda):
                frame.returns.append(self.eval(fn.body, frame))
            else:
                self.exec_block(fn.body, frame)
            result = self.result_of(frame)
            for plugin in self.plugins:
                plugin.leave_function(func, frame, result)
        finally:
            self.nesting -= 1
            del self.active[key]
            self.active_functions[id(fn)] -= 1
            if outer_returns is None:
                self.returns_in_progress.pop(id(fn), None)
            else:
                self.returns_in_progress[id(fn)] = outer_returns
        summary.result = result
        for path in frame.mutated:
            root, _, rest = path.partition(".")
            if root in params and path in frame.env:
                summary.effects[(params.index(root), rest)] = frame.env[path]
        for path, saved_by in frame.saved.items():
            root, _, rest = path.partition(".")
            summary.saved[(params.index(root), rest)] = saved_by
        for plugin in self.plugins:
            summary.state.update(plugin.summary_state(frame))
        self.summary_cache(func).add(key, id(fn), summary)
        return summary

    def result_of(self, frame: Frame) -> Value:
        if frame.yields:  # a generator: iterating it gives what it yields
            item = self.join_keep(frame.yields)
            return Value("container", items=(item,), srcs=item.srcs, cuts=item.cuts, deps=item.deps,
                         opaque=item.opaque)
        returns = frame.returns
        if not returns:
            return NONE
        if len(returns) == 1:
            return returns[0]
        kinds = {r.kind for r in returns}
        if len(kinds) == 1 and all(r.items is not None for r in returns) and len({len(r.items) for r in returns}) == 1:
            return join(*returns, paths=True)
        return self.join_keep(returns, paths=True) if len(kinds) == 1 else join(*returns, paths=True)

    def instantiate_summary(self, summary: Summary, func: FunctionRef, params: list, actuals: dict, frame: Frame,
                            node: ast.AST | None, self_effects: dict | None, fn) -> Value:
        subst = Substitution(dict(zip(summary.roots, actuals)))
        self.call_sites.append(node)
        try:
            for event in summary.events:
                if event is REPEATED:
                    if frame.events is not None:
                        frame.events.append(REPEATED)
                    continue
                self.emit(subst.event(event), frame)
        finally:
            self.call_sites.pop()
        if summary.effects:
            paths = self.argument_paths(func, node, len(params), frame)
            for (index, rest), value in summary.effects.items():
                new = subst.value(value)
                if index == 0 and self_effects is not None:
                    self_effects[rest] = new
                    continue
                base = paths[index] if index < len(paths) else None
                if base:
                    self.store_path(f"{base}.{rest}" if rest else base, new, frame, mutation=True)
        if summary.saved and getattr(func.cls, "is_module", False):
            # a module's forward (or another of its methods) keeps its input for backward: so does the caller's
            # tensor (a plain helper's inner saves are not followed out: in-place code paths there are often
            # meant for inference only)
            paths = self.argument_paths(func, node, len(params), frame)
            for (index, rest), saved_by in summary.saved.items():
                base = paths[index] if index < len(paths) else None
                key = f"{base}.{rest}" if base and rest else base
                current = frame.env.get(key) if key else None
                if current is not None and current.kind == "tensor" and current.srcs and not current.saved_by \
                        and not current.leaf:
                    self.mark_saved(key, saved_by, frame)
        if summary.state:
            for plugin in self.plugins:
                plugin.apply_summary_state(summary.state, frame)
        return subst.value(summary.result)

    def argument_paths(self, func: FunctionRef, node: ast.AST | None, count: int, frame: Frame) -> list:
        """The caller's access path for each parameter (None where the argument is not a plain path)."""
        paths: list = []
        if func.bound:
            receiver = node.func.value if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
            if _is_super_call(receiver) and frame.func is not None and frame.func.params():
                paths.append(frame.func.params()[0])  # `super().__init__(...)` sets attributes on our own self
            else:
                paths.append(dotted(receiver) if receiver is not None else None)
            paths.extend([None] * (len(func.bound) - 1))
        if isinstance(node, ast.Call):
            for a in node.args:
                paths.append(dotted(a) if not isinstance(a, ast.Starred) else None)
        return paths + [None] * max(0, count - len(paths))


# ====================================================================== helpers
GRAPH_NODES = frozenset({ast.Call, ast.BinOp, ast.UnaryOp, ast.Subscript})
OBSERVED_NODES = frozenset({ast.Name, ast.Attribute, ast.Call, ast.BinOp, ast.Subscript, ast.UnaryOp})
STATEMENTS = {getattr(ast, name[2:]): fn for name, fn in vars(Interpreter).items()
              if name.startswith("s_") and hasattr(ast, name[2:])}
STATEMENTS.update({lazy: STATEMENTS[lazy.__mro__[1]] for lazy in LAZY_KINDS})  # a definition of an imported file
EXPRESSIONS = {getattr(ast, name[2:]): fn for name, fn in vars(Interpreter).items()
               if name.startswith("e_") and hasattr(ast, name[2:])}


def _makes_iterator(expr: ast.expr, module) -> bool:
    """A one-shot iterator: `m.parameters()` / `m.named_parameters()`, `filter(...)`, `map(...)`, `iter(...)`, a
    generator expression."""
    if isinstance(expr, ast.GeneratorExp):
        return True
    if not isinstance(expr, ast.Call):
        return False
    func = expr.func
    if isinstance(func, ast.Attribute):
        return func.attr in ("parameters", "named_parameters") and not expr.args
    return isinstance(func, ast.Name) and func.id in ("filter", "map", "iter") and func.id not in module.functions \
        and module.names.qualname(func) in (None, func.id, f"builtins.{func.id}")


def _last_binding(body: list, name: str) -> ast.stmt | None:
    """The last statement in an arm that binds `name` (at any depth)."""
    found = None
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == name for target in targets for t in ast.walk(target)):
                    found = node
    return found


def _saved_on_a_path(before: Value | None, vals: list) -> Value | None:
    """The tensor a name held before the branches, saved for backward by a layer on some of them and left as it was
    on the others (`sc = self.shortcut(x)` in one arm, `sc = x` in the other): it may be saved, so an in-place change
    of it afterwards breaks backward on that path. None when a branch rebound the name (a join as usual)."""
    if before is None or before.kind != "tensor" or before.saved_by:
        return None
    saved = None
    for v in vals:
        if v is before:
            continue
        if not v.saved_by or replace(v, saved_by=None) != before:
            return None
        saved = saved or v
    return saved


def _is_super_call(node) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _node_count(module) -> int:
    try:
        return module.source.node_count
    except Exception:  # noqa: BLE001
        return 10_000


def _const_key(node: ast.AST):
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and isinstance(node.operand.value, int):
        return -node.operand.value
    return None


def _literal(node: ast.AST):
    return _const_key(node)


def none_refinements(test: ast.expr, frame: Frame) -> tuple:
    """({name: None} for the arm where `test` says so, for the other): `if h is not None:` / `if h is None:`."""
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Is, ast.IsNot)) \
            and isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value is None:
        key = dotted(test.left)
        if key and key in frame.env:
            return ({key: NONE}, {}) if isinstance(test.ops[0], ast.Is) else ({}, {key: NONE})
    return ()


def class_constant(cls: ast.ClassDef, attr: str) -> Value:
    """A literal the class body binds to `attr` (None, a bool, a number or a string), as a value; else unknown."""
    table = getattr(cls, "_literal_attributes", None)
    if table is None:
        table = cls._literal_attributes = _literal_attributes(cls)  # kept with the tree: once per parsed class
    return table.get(attr, UNKNOWN)


def _literal_attributes(cls: ast.ClassDef) -> dict:
    """{name: value} of the literals a class body binds, but for names set on an instance anywhere in it."""
    stored = {sub.attr for sub in ast.walk(cls) if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store)}
    out: dict = {}
    for stmt in cls.body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else (
            stmt.target if isinstance(stmt, ast.AnnAssign) else None)
        if not isinstance(target, ast.Name) or target.id in stored:
            continue
        v = stmt.value.value if isinstance(stmt.value, ast.Constant) else ...
        if isinstance(v, bool):
            out[target.id] = TRUE if v else FALSE
        elif v is None:
            out[target.id] = NONE
        elif isinstance(v, (int, float)):
            out[target.id] = Value("number", dtype="int" if isinstance(v, int) else "float")
        elif isinstance(v, str):
            out[target.id] = str_value(v)
        else:
            out.pop(target.id, None)  # the last binding wins
    return out


def literal_comparison(ops: list, values: list) -> bool | None:
    """The outcome of a comparison between literals (`'relu' == 'relu'`, `None is None`, `'gelu' in ('relu',
    'gelu')`), or None when a side is not one."""
    outcome = True
    for op, left, right in zip(ops, values, values[1:]):
        a = literal_of(left)
        if a is NO_LITERAL:
            return None
        if isinstance(op, (ast.In, ast.NotIn)):
            if right.kind not in ("container", "dict") or right.items is None or right.keys is not None:
                return None
            members = [literal_of(item) for item in right.items]
            if any(m is NO_LITERAL for m in members):
                return None
            result = any(type(m) is type(a) and m == a for m in members)
            result = result if isinstance(op, ast.In) else not result
        else:
            b = literal_of(right)
            if b is NO_LITERAL:
                return None
            same = type(a) is type(b) and a == b
            if isinstance(op, (ast.Eq, ast.Is)):
                result = same
            elif isinstance(op, (ast.NotEq, ast.IsNot)):
                result = not same
            else:
                return None
        outcome = outcome and result
    return outcome


def _constant_truth(test: ast.AST):
    if isinstance(test, ast.Constant):
        return bool(test.value)
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq) and {
            ast.unparse(test.left), ast.unparse(test.comparators[0])} == {"__name__", "'__main__'"}:
        return True  # the script's entry point: the checked file is analysed as the program it runs
    return None


def _binop_dtype(op, a: str | None, b: str | None) -> str | None:
    if isinstance(op, ast.Div):
        return "float" if a in ("int", "bool", "float") and b in ("int", "bool", "float") else None
    if a == b:
        return "int" if a == "bool" and not isinstance(op, (ast.BitAnd, ast.BitOr, ast.BitXor)) else a
    if {a, b} <= {"int", "bool"}:
        return "int"
    if "float" in (a, b) and None not in (a, b):
        return "float"
    return None


def read_before_written(loop: ast.stmt) -> frozenset:
    """Names and dotted names (`self.h`) the loop body may read before it writes them, in textual order:
    the values one iteration hands to the next. Nested functions and classes are not looked into."""
    written: set = set()
    exposed: set = set()
    if isinstance(loop, (ast.For, ast.AsyncFor)):
        written.update(n.id for n in ast.walk(loop.target) if isinstance(n, ast.Name))

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            return
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            if isinstance(node, ast.AugAssign):
                visit_load(node.target)
            if node.value is not None:
                visit(node.value)
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for sub in ast.walk(target):
                    if isinstance(sub, (ast.Name, ast.Attribute)) and isinstance(sub.ctx, ast.Store):
                        name = dotted(sub)
                        if name:
                            written.add(name)
                    elif isinstance(sub, ast.expr) and isinstance(getattr(sub, "ctx", None), ast.Load):
                        visit_load(sub)
            return
        if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load):
            visit_load(node)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    def visit_load(node: ast.AST) -> None:
        name = dotted(node)
        if name is not None:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix not in written:
                    exposed.add(prefix)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    if isinstance(loop, ast.While):
        visit(loop.test)
    for stmt in loop.body:
        visit(stmt)
    return frozenset(exposed)
