"""PyTorch value flow: follow values from trainable sources to the sinks, through the cuts.

An abstract interpreter over `ast`: it walks module code, functions and methods in order, binding
names to `Value`s (what gradient sources each value carries, through which cuts), following calls
into same-file and project functions and `forward` methods with the caller's values, and records
events: sinks (`backward()`, `torch.autograd.grad`), optimizers and their steps, in-place ops,
grad-mode changes. `TorchFacts` then says which cut disconnects which source from every sink.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, replace
from functools import cached_property

from gradtrace.analysis import torch_api as api
from gradtrace.analysis.modules import ClassInfo, ModuleContext
from gradtrace.analysis.names import NameTable
from gradtrace.analysis.names import dotted as _dotted
from gradtrace.analysis.values import (
    EMPTY,
    NUMBER,
    UNKNOWN,
    Cut,
    Value,
    combine,
    cut,
    join,
    named,
    overlaps,
)
from gradtrace.analysis.values import expr_text as _text

MAX_CALL_DEPTH = 10
MAX_STEPS = 400_000  # evaluation budget per file; past it the rest is skipped (GT002)
MODEL_PARAM_HINTS = ("model", "net", "encoder", "decoder", "policy", "actor", "critic", "generator",
                     "discriminator", "backbone", "head", "module", "layer", "classifier", "agent", "teacher",
                     "student")


@dataclass(eq=False)
class FunctionInfo:
    node: ast.AST  # FunctionDef | AsyncFunctionDef | Lambda
    module: ModuleContext
    cls: ClassInfo | None = None
    grad_off_decorator: ast.AST | None = None

    @cached_property
    def name(self) -> str:
        return getattr(self.node, "name", "<lambda>")


@dataclass
class GradOff:
    node: ast.AST  # the `torch.no_grad()` call, the decorator, or `set_grad_enabled(False)`
    kind: str  # no_grad | no_grad_helper | grad_disabled
    op: str
    module: ModuleContext
    via: ast.AST | None = None
    sticky: bool = False  # a bare set_grad_enabled(False): outlives the function that called it


@dataclass(eq=False)
class Sink:
    node: ast.AST
    value: Value
    module: ModuleContext
    kind: str  # backward | autograd.grad | output
    label: str  # what is differentiated, e.g. "loss"
    owner: ClassInfo | None = None  # for "output" sinks: the class whose forward returns it


@dataclass(eq=False)
class Optimizer:
    node: ast.AST
    module: ModuleContext
    coverage: Value
    known: bool
    var: str | None = None
    top: ast.stmt | None = None  # the module-level statement that built it (calls made from there)


@dataclass(eq=False)
class Step:
    node: ast.AST
    module: ModuleContext
    optimizer: Value
    last_sink: Sink | None


@dataclass(eq=False)
class InPlace:
    node: ast.AST
    module: ModuleContext
    target: Value
    var: str
    op: str
    grad_off: bool
    stmt: ast.stmt | None = None


@dataclass(eq=False)
class Freeze:
    node: ast.AST
    module: ModuleContext
    srcs: frozenset[str]
    frozen: bool
    conditional: bool


@dataclass(eq=False)
class Surgery:
    node: ast.AST
    module: ModuleContext
    target: str
    optimizer: Optimizer


@dataclass(eq=False)
class NonLeafRequiresGrad:
    node: ast.AST
    module: ModuleContext
    var: str


@dataclass(eq=False)
class DeadCut:
    cut: Cut
    lost: list[str]
    severity: str  # warning | information
    sink: Sink
    raises: bool = False  # nothing else reaches the sink: backward() raises
    partial: bool = False  # the source still gets part of its gradient through another path


@dataclass
class Frame:
    module: ModuleContext
    env: dict[str, Value]
    func: FunctionInfo | None = None
    self_value: Value | None = None
    grad_off: GradOff | None = None
    returns: list[Value] = field(default_factory=list)
    conditional: int = 0
    last_sink: Sink | None = None
    top: bool = False  # module-level code (and its branches), not a function body

    def child_env(self) -> Frame:
        return Frame(self.module, dict(self.env), self.func, self.self_value, self.grad_off, self.returns,
                     self.conditional, self.last_sink, self.top)


class BudgetExceeded(Exception):
    pass


def param_value(name: str) -> Value:
    """An argument of a function analysed on its own: a model-like name is a possible source."""
    lowered = name.lower()
    if any(h in lowered for h in MODEL_PARAM_HINTS) and lowered not in ("head_dim",):
        return Value(kind="unknown", srcs=frozenset({name}), opaque=True, name=name, extra=("param",))
    return UNKNOWN


class TorchFlow:
    def __init__(self, module: ModuleContext):
        self.root = module
        self.sinks: list[Sink] = []
        self.optimizers: list[Optimizer] = []
        self.steps: list[Step] = []
        self.inplace: list[InPlace] = []
        self.freezes: list[Freeze] = []
        self.surgeries: list[Surgery] = []
        self.nonleaf_flags: list[NonLeafRequiresGrad] = []
        self.zero_masks: list[tuple[ast.AST, ModuleContext, Value]] = []
        self.source_kind: dict[str, str] = {}  # source name -> param | leaf | module | attr
        self.definitions: dict[str, tuple[ast.AST, ModuleContext]] = {}  # source name -> where it is defined
        self.memo: dict = {}
        self.active: set = set()
        self.depth = 0
        self.steps_taken = 0
        self.incomplete = False
        self.error: str | None = None
        self._seen_optimizer_nodes: set[int] = set()
        self.globals: dict[str, dict[str, Value]] = {}  # module path -> its top-level names
        self.carried: list[tuple[ast.stmt, ModuleContext, list[str]]] = []  # loops and the graphs they carry
        self.exposed: dict[ast.stmt, frozenset[str]] = {}  # loop -> names read before written in its body
        self.module_frame: Frame | None = None
        self.top_stmt: ast.stmt | None = None
        self.interpreted: set[int] = set()  # functions already followed with their callers' values
        self.cut_vars: dict[int, str] = {}  # id(cut) -> the variable that first held the cut value

    # ------------------------------------------------------------------ driver
    def run(self) -> None:
        module = self.root
        try:
            frame = Frame(module, {}, top=True)
            self.globals[module.path] = frame.env
            self.module_frame = frame
            self.exec_block(module.source.tree.body, frame)
            self.module_frame = self.top_stmt = None
            for name, node in module.functions.items():
                if name not in module.called_names:
                    self.analyse_standalone(FunctionInfo(node, module, None, self.grad_off_decorator(node, module)))
            for info in module.classes.values():
                self.analyse_class(info)
        except BudgetExceeded:
            self.incomplete = True
        except RecursionError:
            self.incomplete = True
        except Exception:  # never lose the file's other findings to a gap in the value flow
            import traceback

            self.incomplete = True
            self.error = traceback.format_exc()

    def analyse_standalone(self, func: FunctionInfo, self_value: Value | None = None) -> Value:
        args = func.node.args
        env: dict[str, Value] = {}
        params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
        for index, name in enumerate(params):
            if index == 0 and self_value is not None:
                env[name] = self_value
            else:
                env[name] = param_value(name)
                if env[name].srcs:
                    self.source_kind.setdefault(name, "param")
        if args.vararg:
            env[args.vararg.arg] = UNKNOWN
        if args.kwarg:
            env[args.kwarg.arg] = UNKNOWN
        frame = Frame(func.module, env, func, self_value)
        body = func.node.body if isinstance(func.node.body, list) else [ast.Return(func.node.body)]
        self.exec_block(body, frame)
        return join(*frame.returns) if frame.returns else Value("none")

    def analyse_class(self, info: ClassInfo) -> None:
        self_value = Value(kind="module", cls=info, name="self")
        if info.is_module:
            found = info.find_method("forward")
            if found and found[1] is info and id(found[0]) not in self.interpreted:
                out = self.analyse_standalone(FunctionInfo(found[0], info.module, info), self_value)
                if out.cuts:
                    self.sinks.append(Sink(found[0], out, info.module, "output", f"{info.name}.forward()", info))
            for name, method in info.methods.items():
                if name in ("forward", "__init__") or name.startswith("__"):
                    continue
                if self._has_sink(method):
                    self.analyse_standalone(FunctionInfo(method, info.module, info), self_value)
        else:
            init_env = self._object_env(info)
            obj = Value(kind="object", cls=info, name="self", extra=("object", tuple(sorted(init_env.items()))))
            for name, method in info.methods.items():
                if name == "__init__" or not self._has_sink(method):
                    continue
                self.analyse_standalone(FunctionInfo(method, info.module, info), obj)

    def _object_env(self, info: ClassInfo) -> dict[str, Value]:
        init = info.methods.get("__init__")
        if init is None:
            return {}
        frame = Frame(info.module, {}, FunctionInfo(init, info.module, info), Value(kind="object", cls=info))
        args = init.args
        for index, a in enumerate(args.posonlyargs + args.args + args.kwonlyargs):
            frame.env[a.arg] = frame.self_value if index == 0 else param_value(a.arg)
        try:
            self.exec_block(init.body, frame)
        except (BudgetExceeded, RecursionError):
            raise
        return {k[5:]: v for k, v in frame.env.items() if k.startswith("self.") and k.count(".") == 1}

    @staticmethod
    def _has_sink(method: ast.AST) -> bool:
        for node in ast.walk(method):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "backward", "grad", "step"
            ):
                return True
        return False

    def grad_off_decorator(self, node: ast.AST, module: ModuleContext) -> ast.AST | None:
        for dec in getattr(node, "decorator_list", []):
            target = dec.func if isinstance(dec, ast.Call) else dec
            qn = module.names.qualname(target)
            if qn in api.GRAD_OFF_CONTEXTS:
                return dec
        return None

    # ------------------------------------------------------------------ statements
    def tick(self) -> None:
        self.steps_taken += 1
        if self.steps_taken > MAX_STEPS:
            raise BudgetExceeded

    def exec_block(self, stmts: list[ast.stmt], frame: Frame) -> None:
        for stmt in stmts:
            self.exec_stmt(stmt, frame)

    def exec_stmt(self, stmt: ast.stmt, frame: Frame) -> None:
        self.tick()
        if frame.top and self.module_frame is not None:
            self.top_stmt = stmt  # the module-level statement now running (for the order of calls)
        if isinstance(stmt, ast.Assign):
            value = self.eval(stmt.value, frame)
            for target in stmt.targets:
                self.assign(target, value, frame, stmt)
        elif isinstance(stmt, ast.AnnAssign):
            if stmt.value is not None:
                self.assign(stmt.target, self.eval(stmt.value, frame), frame, stmt)
        elif isinstance(stmt, ast.AugAssign):
            self.exec_augassign(stmt, frame)
        elif isinstance(stmt, ast.Expr):
            self.exec_expr_stmt(stmt, frame)
        elif isinstance(stmt, ast.Return):
            frame.returns.append(self.eval(stmt.value, frame) if stmt.value is not None else Value("none"))
        elif isinstance(stmt, ast.If):
            self.eval(stmt.test, frame)
            self.exec_branches([stmt.body, stmt.orelse], frame)
        elif isinstance(stmt, (ast.For, ast.AsyncFor)):
            self.exec_loop(stmt, frame)
        elif isinstance(stmt, ast.While):
            self.eval(stmt.test, frame)
            self.exec_loop(stmt, frame)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            self.exec_with(stmt, frame)
        elif isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":
            self.exec_block(stmt.body, frame)
            for handler in stmt.handlers:
                self.exec_branches([handler.body], frame)
            self.exec_block(stmt.orelse, frame)
            self.exec_block(stmt.finalbody, frame)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            info = FunctionInfo(stmt, frame.module, None, self.grad_off_decorator(stmt, frame.module))
            frame.env[stmt.name] = Value(kind="function", func=info)
        elif isinstance(stmt, ast.ClassDef):
            pass
        elif type(stmt).__name__ == "Match":
            self.eval(stmt.subject, frame)
            self.exec_branches([case.body for case in stmt.cases], frame)
        elif isinstance(stmt, ast.Delete):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    frame.env.pop(target.id, None)

    def exec_branches(self, bodies: list[list[ast.stmt]], frame: Frame) -> None:
        envs = []
        frame.conditional += 1
        grad_offs = []
        for body in bodies:
            branch = frame.child_env()
            self.exec_block(body, branch)
            envs.append(branch.env)
            grad_offs.append(branch.grad_off)
            if branch.last_sink is not None:
                frame.last_sink = branch.last_sink
        frame.conditional -= 1
        if len(bodies) == 1:
            envs.append(frame.env)
        self.merge_envs(frame, envs)
        sticky = [g for g in grad_offs if g is not None and g.sticky]
        if sticky and frame.grad_off is None:
            frame.grad_off = sticky[0]

    def merge_envs(self, frame: Frame, envs: list[dict[str, Value]]) -> None:
        keys = set().union(*envs)
        merged = {}
        for key in keys:
            vals = [env[key] for env in envs if key in env]
            first = vals[0]
            if all(v is first for v in vals):
                merged[key] = first
            else:
                merged[key] = self.join_keep(vals)
        frame.env.clear()
        frame.env.update(merged)

    @staticmethod
    def join_keep(vals: list[Value]) -> Value:
        """Join that keeps module/optimizer identity when every branch agrees on the kind."""
        kinds = {v.kind for v in vals}
        if len(kinds) == 1 and next(iter(kinds)) in ("module", "optimizer", "params", "function", "class", "object"):
            base = vals[-1]
            return replace(base, srcs=frozenset().union(*(v.srcs for v in vals)))
        j = join(*vals)
        if all(v.leaf for v in vals):
            j = replace(j, leaf=True)
        return j

    def exec_loop(self, stmt: ast.stmt, frame: Frame) -> None:
        element = None
        iterable = None
        if isinstance(stmt, (ast.For, ast.AsyncFor)):
            iterable = self.eval(stmt.iter, frame)
            element = self.element(iterable)
        # A loop over a model's parameters applies its body to every one of them: not a condition.
        counts_as_condition = iterable is None or iterable.kind not in ("params", "named_params")
        frame.conditional += counts_as_condition
        before = dict(frame.env)
        grad_off, last_sink, steps = frame.grad_off, frame.last_sink, len(self.steps)
        for loop_pass in range(2):  # twice: values carried from one iteration to the next
            if loop_pass == 1 and frame.grad_off is grad_off and not self.carries_over(stmt, before, frame.env) \
                    and (frame.last_sink is last_sink or all(s.last_sink is not last_sink for s in self.steps[steps:])):
                break  # the second pass would see what the first saw: grad mode, values and the last backward
            if element is not None:
                self.assign(stmt.target, element, frame, stmt)
            if loop_pass == 1:
                carried = sorted(name for name, v in frame.env.items()
                                 if "." not in name and v.srcs and v.kind == "tensor" and not v.opaque
                                 and before.get(name) is not v)
                if carried:
                    self.carried.append((stmt, frame.module, carried))
            self.exec_block(stmt.body, frame)
        self.merge_envs(frame, [before, frame.env])
        self.exec_block(stmt.orelse, frame)
        frame.conditional -= counts_as_condition

    def carries_over(self, loop: ast.stmt, before: dict, after: dict) -> bool:
        """Can the second pass over a loop body see anything the first did not? Only if a name the body
        reads before writing it (a value from the previous iteration) was bound by the first pass to a
        value that carries gradient, cuts or a new kind."""
        exposed = self.exposed.get(loop)
        if exposed is None:
            exposed = self.exposed[loop] = _read_before_written(loop)
        for name in exposed:
            new = after.get(name)
            old = before.get(name)
            if new is None or new is old:
                continue
            if old is None or new.srcs or new.cuts or new.kind != old.kind:
                return True
        return False

    def exec_with(self, stmt: ast.With, frame: Frame) -> None:
        previous = frame.grad_off
        for item in stmt.items:
            ctx_value = self.eval(item.context_expr, frame)
            if ctx_value.kind == "grad_ctx":
                mode, = ctx_value.extra[1:2]
                if mode == "off":
                    qn = ctx_value.extra[0]
                    written = _text(item.context_expr) or f"{qn.split('.')[-1]}()"
                    frame.grad_off = GradOff(item.context_expr, "no_grad", f"with {written}", frame.module)
                elif mode == "on":
                    frame.grad_off = None
            if item.optional_vars is not None:
                self.assign(item.optional_vars, ctx_value if ctx_value.kind != "grad_ctx" else UNKNOWN, frame, stmt)
        self.exec_block(stmt.body, frame)
        if frame.grad_off is None or not frame.grad_off.sticky:
            frame.grad_off = previous

    def exec_augassign(self, stmt: ast.AugAssign, frame: Frame) -> None:
        target_value = self.eval_target(stmt.target, frame)
        value = self.eval(stmt.value, frame)
        if target_value is not None and target_value.kind == "tensor":
            symbol = AUG_SYMBOLS.get(type(stmt.op), "op=")
            self.record_inplace(stmt, frame, target_value, stmt.target, f"{_text(stmt.target)} {symbol} ...", stmt)
        result = combine(target_value.kind if target_value else "unknown", *(v for v in (target_value, value) if v))
        if isinstance(stmt.op, ast.Mult) and _is_zero(stmt.value):
            result = cut(result, stmt, "zero", "* 0", zero=True, module=frame.module)
        if target_value is not None and target_value.kind == "container":
            result = replace(join(target_value, value), kind="container")
        if target_value is not None and target_value.kind == "tensor":
            if frame.grad_off is not None:
                return  # an in-place update under no_grad keeps the tensor's own history
            result = replace(result, leaf=False)
        self.store(stmt.target, self.apply_grad_mode(result, frame), frame)

    def exec_expr_stmt(self, stmt: ast.Expr, frame: Frame) -> None:
        call = stmt.value
        if isinstance(call, ast.Call):
            qn = frame.module.names.qualname(call.func)
            if qn in api.SET_GRAD_ENABLED and call.args:
                enabled = call.args[0]
                if isinstance(enabled, ast.Constant) and enabled.value is False:
                    frame.grad_off = GradOff(call, "grad_disabled", "torch.set_grad_enabled(False)", frame.module,
                                             sticky=True)
                elif isinstance(enabled, ast.Constant) and enabled.value is True:
                    frame.grad_off = None
                return
            if isinstance(call.func, ast.Attribute):
                method = call.func.attr
                receiver = call.func.value
                if method in ("append", "extend", "insert", "add", "update") and isinstance(receiver, (ast.Name, ast.Attribute)):
                    container = self.eval(receiver, frame)
                    if container.kind in ("container", "unknown", "params") or container.items is not None:
                        added = [self.eval(a, frame) for a in call.args]
                        if method == "extend":
                            added = [self.element(a) for a in added]
                        new = Value("container", srcs=container.srcs.union(*(a.srcs for a in added)),
                                    cuts=join(container, *added).cuts,
                                    items=(container.items or ()) + tuple(added),
                                    opaque=container.opaque or any(a.opaque for a in added))
                        self.store(receiver, new, frame)
                        return
                if method == "add_param_group" and call.args:
                    opt = self.eval(receiver, frame)
                    group = self.eval(call.args[0], frame)
                    if opt.kind == "optimizer":
                        self.store(receiver, replace(opt, srcs=opt.srcs | group.srcs), frame)
                        for o in self.optimizers:
                            if o.var and isinstance(receiver, ast.Name) and o.var == receiver.id:
                                o.coverage = replace(o.coverage, srcs=o.coverage.srcs | group.srcs)
                    return
        self.eval(call, frame)

    # ------------------------------------------------------------------ assignment
    def assign(self, target: ast.AST, value: Value, frame: Frame, stmt: ast.stmt) -> None:
        if isinstance(target, ast.Name):
            previous = frame.env.get(target.id)
            if value.kind == "module" and value.pending and previous is not None and previous.kind == "module":
                self.note_replaced_model(target.id, frame, stmt)
            if value.pending and stmt is not None:
                self.definitions.setdefault(target.id, (stmt, frame.module))
            value = self.name_value(value, target.id)
            frame.env[target.id] = value
            for c in value.cuts[-4:]:
                # name what a no_grad region or helper produced after the variable that first holds it
                in_region = frame.grad_off is not None and frame.grad_off.node is c.node
                if c.var is None and (in_region or (stmt is not None and _contains(stmt, c.node))):
                    self.cut_vars.setdefault(id(c), target.id)
            if value.kind == "optimizer":
                for o in self.optimizers:
                    if o.coverage is value.extra[0] if value.extra else False:
                        o.var = target.id
        elif isinstance(target, (ast.Tuple, ast.List)):
            parts = self.unpack(value, len(target.elts))
            for elt, part in zip(target.elts, parts):
                if isinstance(elt, ast.Starred):
                    self.assign(elt.value, Value("container", srcs=part.srcs, cuts=part.cuts), frame, stmt)
                else:
                    self.assign(elt, part, frame, stmt)
        elif isinstance(target, ast.Attribute):
            self.assign_attribute(target, value, frame, stmt)
        elif isinstance(target, ast.Subscript):
            base = self.eval_target(target.value, frame)
            self.eval(target.slice, frame)
            if base is not None and base.kind == "tensor":
                self.record_inplace(target, frame, base, target.value, f"{_text(target)} = ...", stmt)
                merged = combine("tensor", base, value)
                self.store(target.value, self.apply_grad_mode(merged, frame), frame)
            elif base is not None and base.kind in ("container", "unknown"):
                merged = Value("container", srcs=base.srcs | value.srcs, cuts=join(base, value).cuts,
                               items=(base.items or ()) + (value,), opaque=base.opaque)
                self.store(target.value, merged, frame)
        elif isinstance(target, ast.Starred):
            self.assign(target.value, value, frame, stmt)

    def note_replaced_model(self, name: str, frame: Frame, stmt: ast.stmt | None) -> None:
        """`model = Net()` again after an optimizer was built over the old `model`'s parameters."""
        if stmt is None:
            return
        for opt in self.optimizers:
            if opt.known and opt.module is frame.module and name in opt.coverage.srcs and _before(opt.node, stmt):
                self.surgeries.append(Surgery(stmt, frame.module, name, opt))
                return

    def name_value(self, value: Value, name: str) -> Value:
        if value.pending:
            value = named(value, name)
            if value.srcs:
                kind = "releaf" if "releaf" in value.extra else ("leaf" if value.kind == "tensor" else "module")
                self.source_kind.setdefault(name, kind)
        return value

    def assign_attribute(self, target: ast.Attribute, value: Value, frame: Frame, stmt: ast.stmt) -> None:
        owner = self.eval(target.value, frame)
        attr = target.attr
        key = _dotted(target)
        if attr == "requires_grad" and owner.kind in ("tensor", "unknown"):
            owner_key = _dotted(target.value)
            flag = stmt.value if isinstance(stmt, ast.Assign) else None
            flag_true = isinstance(flag, ast.Constant) and flag.value is True
            flag_false = isinstance(flag, ast.Constant) and flag.value is False
            if flag_true and owner.kind == "tensor" and owner.srcs and not owner.leaf and not owner.opaque:
                self.nonleaf_flags.append(NonLeafRequiresGrad(stmt, frame.module, owner_key or "tensor"))
            elif not flag_false and owner_key and not owner.srcs:
                # `x.requires_grad = True` (or a flag we cannot read) makes `x` a trainable leaf
                frame.env[owner_key] = replace(owner, kind="tensor", srcs=frozenset({owner_key}), leaf=True,
                                               name=owner_key, opaque=owner.opaque or not flag_true)
                self.source_kind.setdefault(owner_key, "leaf")
            elif flag_false and owner.srcs:
                self.freezes.append(Freeze(stmt, frame.module, owner.srcs, True, frame.conditional > 0))
            return
        if owner.kind == "module" and key:
            for opt in self.optimizers:
                if opt.known and any(overlaps(owner_src, s) for owner_src in owner.srcs for s in opt.coverage.srcs):
                    # after it in the source, or run by a later module-level statement than the one that
                    # built it (`trainer = Trainer(model)` then `model.reset_classifier(5)`)
                    later = _before(opt.node, stmt) or (opt.top is not None and self.top_stmt is not None
                                                        and _before(opt.top, self.top_stmt))
                    if value.kind == "module" and opt.module is frame.module and later:
                        self.surgeries.append(Surgery(stmt, frame.module, key, opt))
        if key:
            if value.pending:
                value = self.name_value(value, key)
            frame.env[key] = value

    def unpack(self, value: Value, n: int) -> list[Value]:
        if value.items is not None and len(value.items) == n:
            return list(value.items)
        if "values_indices" in value.extra and n == 2:
            return [self.values_of(value), self.indices_of(value)]
        if value.items:
            element = join(*value.items)
            return [element] * n
        part = replace(value, items=None, name=None, pending=False, extra=())
        if value.kind in ("module", "optimizer", "function"):
            part = Value("unknown", srcs=value.srcs, cuts=value.cuts, opaque=True)
        return [part] * n

    def element(self, value: Value) -> Value:
        """One element of iterating over `value`."""
        if value.items:
            return self.join_keep(list(value.items))
        if value.kind == "params":
            return Value("tensor", srcs=value.srcs, leaf=bool(value.srcs), opaque=value.opaque)
        if value.kind == "named_params":
            return Value("container", items=(Value("str"), Value("tensor", srcs=value.srcs, leaf=bool(value.srcs))),
                         srcs=value.srcs)
        if value.kind == "range":
            return NUMBER
        if value.kind == "container" and not value.items:
            return Value("unknown", srcs=value.srcs, cuts=value.cuts, opaque=True)
        if value.kind == "tensor":
            return replace(value, leaf=False, name=None, items=None, extra=())
        if value.kind == "module":  # nn.Sequential / ModuleList iteration
            return Value("module", srcs=value.srcs, name=None)
        return Value("unknown", srcs=value.srcs, cuts=value.cuts, opaque=True)

    def store(self, target: ast.AST, value: Value, frame: Frame) -> None:
        if isinstance(target, ast.Name):
            frame.env[target.id] = value
        else:
            key = _dotted(target)
            if key:
                frame.env[key] = value

    def eval_target(self, target: ast.AST, frame: Frame) -> Value | None:
        if isinstance(target, (ast.Name, ast.Attribute, ast.Subscript)):
            return self.eval(target, frame)
        return None

    # ------------------------------------------------------------------ in-place and grad mode
    def record_inplace(self, node: ast.AST, frame: Frame, target: Value, target_node: ast.AST, op: str,
                       stmt: ast.stmt | None) -> None:
        var = _dotted(target_node) or "tensor"
        self.inplace.append(InPlace(node, frame.module, target, var, op, frame.grad_off is not None, stmt))

    def apply_grad_mode(self, value: Value, frame: Frame) -> Value:
        off = frame.grad_off
        if off is None or not value.srcs or value.kind in ("module", "params", "named_params", "optimizer",
                                                            "function", "class", "object"):
            return value
        return cut(value, off.node, off.kind, off.op, module=off.module, via=off.via)

    # ------------------------------------------------------------------ expressions
    def eval(self, node: ast.AST | None, frame: Frame) -> Value:
        if node is None:
            return Value("none")
        self.steps_taken += 1
        if self.steps_taken > MAX_STEPS:
            raise BudgetExceeded
        method = EVAL_DISPATCH.get(type(node))
        if method is None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.eval(child, frame)
            return UNKNOWN
        value = method(self, node, frame)
        if frame.grad_off is not None and isinstance(node, (ast.Call, ast.BinOp, ast.UnaryOp, ast.Subscript)):
            value = self.apply_grad_mode(value, frame)
        return value

    def eval_Constant(self, node: ast.Constant, frame: Frame) -> Value:
        if isinstance(node.value, bool):
            return Value("bool")
        if isinstance(node.value, (int, float, complex)):
            return Value("number", intlike=isinstance(node.value, int))
        if node.value is None:
            return Value("none")
        return Value("str")

    def eval_Name(self, node: ast.Name, frame: Frame) -> Value:
        if node.id in frame.env:
            return frame.env[node.id]
        module = frame.module
        top = self.globals.get(module.path)
        if top is not None and node.id in top and top is not frame.env:
            return top[node.id]
        if node.id in module.classes:
            return Value("class", cls=module.classes[node.id])
        found = module.resolve_function(node.id)
        if found:
            func, owner = found
            return Value("function", func=FunctionInfo(func, owner, None, self.grad_off_decorator(func, owner)))
        if node.id in module.names.aliases:
            return Value("external", extra=(module.names.aliases[node.id],))
        if node.id in module.names.project_imports:
            cls = module.resolve_class(node.id)
            if cls is not None:
                return Value("class", cls=cls)
        if node.id == "range":
            return Value("builtin", extra=("range",))
        if node.id in BUILTINS:
            return Value("builtin", extra=(node.id,))
        return UNKNOWN

    def eval_Attribute(self, node: ast.Attribute, frame: Frame) -> Value:
        key = _dotted(node)
        if key and key in frame.env:
            return frame.env[key]
        qn = frame.module.names.qualname(node)
        if qn and frame.module.names.is_external(qn) and not (isinstance(node.value, ast.Name) and node.value.id in frame.env):
            return Value("external", extra=(qn,))
        base = self.eval(node.value, frame)
        attr = node.attr
        if attr in META_ATTRS and base.kind not in ("module", "object"):
            return Value("meta")  # shapes, dtypes and flags carry no gradient
        if base.kind == "module":
            return self.module_attribute(base, attr, node, frame)
        if base.kind == "object" and base.extra and base.extra[0] == "object":
            for name, value in base.extra[1]:
                if name == attr:
                    return value
            return UNKNOWN
        if base.kind == "tensor" or (base.kind == "unknown" and attr in TENSOR_ATTRS):
            if attr == "data":
                return cut(replace(base, leaf=False), node, "data", ".data", var=node.value,
                           module=frame.module)
            if attr == "grad":
                return Value("tensor", opaque=base.opaque)
            if attr in ("T", "mT", "H", "mH", "real", "imag"):
                return replace(base, leaf=False, name=None, saved_by=None)
            if attr == "values" and "values_indices" in base.extra:
                return self.values_of(base)
            if attr == "indices" and "values_indices" in base.extra:
                return self.indices_of(base)
            if attr in ("shape", "device", "dtype", "ndim", "requires_grad", "is_leaf", "grad_fn"):
                return Value("meta")
            return Value("unknown", srcs=base.srcs, cuts=base.cuts, opaque=True)
        if base.kind == "unknown" and base.srcs and base.name:
            name = f"{base.name}.{attr}"
            self.source_kind.setdefault(name, self.source_kind.get(base.name, "attr"))
            return Value("unknown", srcs=frozenset({name}), opaque=True, name=name, extra=("param",))
        if base.kind in ("unknown",):
            return Value("unknown", srcs=base.srcs, cuts=base.cuts, opaque=True)
        if base.kind == "optimizer" and attr == "param_groups":
            return Value("container", srcs=base.srcs)
        return UNKNOWN

    def module_attribute(self, base: Value, attr: str, node: ast.AST, frame: Frame) -> Value:
        prefix = base.name or (next(iter(base.srcs)) if len(base.srcs) == 1 else None)
        name = f"{prefix}.{attr}" if prefix else None
        info = base.cls if isinstance(base.cls, ClassInfo) else None
        if info is not None:
            found = info.find_method(attr)
            if found:
                func = FunctionInfo(found[0], found[1].module, found[1], self.grad_off_decorator(found[0], found[1].module))
                if _is_property(found[0]):  # `self.weight` runs the property's body
                    return self.call_function(func, [base], {}, frame, node)
                return Value("method", func=func, extra=(base,))
            fact = info.find_attr(attr)
            if fact is not None and name:
                self.definitions.setdefault(name, (fact.stmt, info.module))
                if fact.kind == "module":
                    cls = info.module.resolve_class(fact.layer) if fact.layer and "." not in fact.layer else None
                    self.source_kind.setdefault(name, "module")
                    extra = ("inplace",) if _inplace_layer(fact.value) else ()
                    srcs = frozenset({name}) if not (fact.layer and fact.layer.split(".")[-1] in
                                                     api.PARAMETERLESS_LAYERS) else EMPTY
                    return Value("module", srcs=srcs, name=name, cls=cls or fact.layer, extra=extra)
                if fact.kind == "param":
                    self.source_kind.setdefault(name, "leaf")
                    return Value("tensor", srcs=frozenset({name}), name=name, leaf=True)
                if fact.kind == "tensor_grad":
                    self.source_kind.setdefault(name, "leaf")
                    return Value("tensor", srcs=frozenset({name}), name=name, leaf=True)
                if fact.kind == "modules_container":
                    item = Value("module", srcs=frozenset({name}), name=name)
                    return Value("container", srcs=frozenset({name}), items=(item,), name=name)
                if fact.kind == "params_container":
                    item = Value("tensor", srcs=frozenset({name}), name=name, leaf=True)
                    return Value("container", srcs=frozenset({name}), items=(item,), name=name)
                if fact.kind == "tensor":
                    return Value("tensor")
                return UNKNOWN
            builtin = info.builtin_base()
            if builtin and name and attr in api.BUILTIN_PARAMS.get(builtin.split(".")[-1], ()):
                self.source_kind.setdefault(name, "leaf")
                return Value("tensor", srcs=frozenset({name}), name=name, leaf=True)
            if attr in ("training",):
                return Value("bool")
            return UNKNOWN
        layer = base.cls if isinstance(base.cls, str) else None
        if layer and name and attr in api.BUILTIN_PARAMS.get(layer.split(".")[-1], ()):
            self.source_kind.setdefault(name, "leaf")
            return Value("tensor", srcs=frozenset({name}), name=name, leaf=True)
        if name and base.srcs:
            return Value("module", srcs=frozenset({name}), name=name)
        return UNKNOWN

    def values_of(self, value: Value) -> Value:
        return replace(value, extra=tuple(e for e in value.extra if e != "values_indices"), items=None)

    def indices_of(self, value: Value) -> Value:
        node, module, op = value.extra[value.extra.index("values_indices") + 1]
        return cut(value, node, "index", op + ".indices", result_kind="tensor", module=module, intlike=True)

    def eval_BinOp(self, node: ast.BinOp, frame: Frame) -> Value:
        left = self.eval(node.left, frame)
        right = self.eval(node.right, frame)
        if isinstance(node.op, ast.Mult) and (_is_zero(node.left) or _is_zero(node.right)):
            other = right if _is_zero(node.left) else left
            if other.srcs:
                self.zero_masks.append((node, frame.module, other))
        kinds = {left.kind, right.kind}
        if "container" in kinds and isinstance(node.op, ast.Add):
            items = (left.items or ()) + (right.items or ())
            return Value("container", srcs=left.srcs | right.srcs, cuts=join(left, right).cuts, items=items or None)
        kind = "tensor" if "tensor" in kinds else ("array" if "array" in kinds else (
            "number" if kinds <= {"number", "bool"} else "unknown"))
        return combine(kind, left, right, intlike=left.intlike and right.intlike)

    def eval_UnaryOp(self, node: ast.UnaryOp, frame: Frame) -> Value:
        value = self.eval(node.operand, frame)
        if isinstance(node.op, ast.Not):
            return Value("bool", cuts=value.cuts)
        return replace(value, leaf=False, name=None, pending=False, saved_by=None)

    def eval_BoolOp(self, node: ast.BoolOp, frame: Frame) -> Value:
        return join(*(self.eval(v, frame) for v in node.values))

    def eval_Compare(self, node: ast.Compare, frame: Frame) -> Value:
        values = [self.eval(node.left, frame)] + [self.eval(c, frame) for c in node.comparators]
        if any(isinstance(op, (ast.Is, ast.IsNot, ast.In, ast.NotIn)) for op in node.ops):
            return Value("bool")
        merged = join(*values)
        if any(v.kind == "tensor" for v in values) and merged.srcs:
            return cut(merged, node, "compare", _compare_text(node), var=node.left, result_kind="tensor",
                       module=frame.module, intlike=True)
        if any(v.kind == "tensor" for v in values):
            return Value("tensor", cuts=merged.cuts, intlike=True)
        return Value("bool", cuts=merged.cuts)

    def eval_IfExp(self, node: ast.IfExp, frame: Frame) -> Value:
        self.eval(node.test, frame)
        return self.join_keep([self.eval(node.body, frame), self.eval(node.orelse, frame)])

    def eval_Subscript(self, node: ast.Subscript, frame: Frame) -> Value:
        base = self.eval(node.value, frame)
        index_value = self.eval(node.slice, frame)
        index = node.slice
        # `table[logits.argmax(-1)]`: no gradient flows into an index, so what cut it travels with the result
        index_cuts = tuple(c for c in index_value.cuts if c not in base.cuts) if index_value.cuts else ()
        if "values_indices" in base.extra and isinstance(index, ast.Constant) and index.value in (0, 1):
            return self.values_of(base) if index.value == 0 else self.indices_of(base)
        if base.items is not None and isinstance(index, ast.Constant) and isinstance(index.value, int):
            try:
                return base.items[index.value]
            except IndexError:
                return join(*base.items) if base.items else UNKNOWN
        if base.items:
            return self.join_keep(list(base.items))
        if base.kind == "tensor":
            return replace(base, leaf=False, name=None, pending=False, saved_by=None, items=None,
                           extra=tuple(e for e in base.extra if e != "values_indices"), cuts=base.cuts + index_cuts)
        if base.kind == "module":  # nn.Sequential / ModuleList indexing
            name = base.name
            return Value("module", srcs=base.srcs, name=name)
        if base.kind in ("params", "container"):
            return self.element(base)
        return Value("unknown", srcs=base.srcs, cuts=base.cuts + index_cuts, opaque=True)

    def eval_Tuple(self, node: ast.Tuple, frame: Frame) -> Value:
        return self.container(node.elts, frame)

    eval_List = eval_Tuple
    eval_Set = eval_Tuple

    def container(self, elts: list[ast.expr], frame: Frame) -> Value:
        items = tuple(self.eval(e, frame) for e in elts)
        merged = join(*items) if items else Value()
        return Value("container", srcs=merged.srcs, cuts=merged.cuts, items=items,
                     opaque=any(i.opaque for i in items))

    def eval_Dict(self, node: ast.Dict, frame: Frame) -> Value:
        for k in node.keys:
            if k is not None:
                self.eval(k, frame)
        items = tuple(self.eval(v, frame) for v in node.values)
        merged = join(*items) if items else Value()
        return Value("container", srcs=merged.srcs, cuts=merged.cuts, items=items or None,
                     opaque=any(i.opaque for i in items))

    def comprehension(self, generators: list[ast.comprehension], elts: list[ast.expr], frame: Frame) -> Value:
        inner = frame.child_env()
        for gen in generators:
            element = self.element(self.eval(gen.iter, inner))
            self.assign(gen.target, element, inner, None)
            for cond in gen.ifs:
                self.eval(cond, inner)
        values = [self.eval(e, inner) for e in elts]
        item = values[-1] if values else UNKNOWN
        return Value("container", srcs=item.srcs, cuts=item.cuts, items=(item,), opaque=item.opaque)

    def eval_ListComp(self, node, frame: Frame) -> Value:
        return self.comprehension(node.generators, [node.elt], frame)

    eval_SetComp = eval_ListComp
    eval_GeneratorExp = eval_ListComp

    def eval_DictComp(self, node: ast.DictComp, frame: Frame) -> Value:
        return self.comprehension(node.generators, [node.key, node.value], frame)

    def eval_Lambda(self, node: ast.Lambda, frame: Frame) -> Value:
        return Value("function", func=FunctionInfo(node, frame.module))

    def eval_Starred(self, node: ast.Starred, frame: Frame) -> Value:
        return self.eval(node.value, frame)

    def eval_NamedExpr(self, node: ast.NamedExpr, frame: Frame) -> Value:
        value = self.eval(node.value, frame)
        self.assign(node.target, value, frame, None)
        return value

    def eval_JoinedStr(self, node: ast.JoinedStr, frame: Frame) -> Value:
        return Value("str")

    def eval_Await(self, node: ast.Await, frame: Frame) -> Value:
        return self.eval(node.value, frame)

    # ------------------------------------------------------------------ calls
    def eval_Call(self, node: ast.Call, frame: Frame) -> Value:
        func = node.func
        if isinstance(func, ast.Attribute):
            qn = frame.module.names.qualname(func)
            if qn and frame.module.names.is_external(qn) and not (
                isinstance(func.value, ast.Name) and func.value.id in frame.env
            ):
                return self.call_external(qn, node, frame)
            key = _dotted(func)
            if key and key in frame.env:
                return self.call_value(frame.env[key], node, frame)
            receiver = self.eval(func.value, frame)
            if receiver.kind == "module" and isinstance(receiver.cls, ClassInfo):
                if receiver.cls.find_method(func.attr) is None and receiver.cls.find_attr(func.attr) is not None:
                    return self.call_value(self.module_attribute(receiver, func.attr, func, frame), node, frame)
            if receiver.kind == "object" and receiver.extra and receiver.extra[0] == "object":
                attrs = dict(receiver.extra[1])
                if func.attr in attrs:
                    return self.call_value(attrs[func.attr], node, frame)
            return self.call_method(receiver, func.attr, node, frame)
        callee = self.eval(func, frame)
        return self.call_value(callee, node, frame)

    def eval_args(self, node: ast.Call, frame: Frame) -> tuple[list[Value], dict[str, Value]]:
        args = []
        for a in node.args:
            value = self.eval(a, frame)
            if isinstance(a, ast.Starred) and value.items is not None:
                args.extend(value.items)
            else:
                args.append(value)
        kwargs = {k.arg: self.eval(k.value, frame) for k in node.keywords if k.arg}
        for k in node.keywords:
            if k.arg is None:
                self.eval(k.value, frame)
        return args, kwargs

    def call_value(self, callee: Value, node: ast.Call, frame: Frame) -> Value:
        if callee.kind == "external" and callee.extra:
            return self.call_external(callee.extra[0], node, frame)
        if callee.kind == "builtin" and callee.extra:
            return self.call_builtin(callee.extra[0], node, frame)
        args, kwargs = self.eval_args(node, frame)
        if callee.kind == "function":
            return self.call_function(callee.func, args, kwargs, frame, node)
        if callee.kind == "method" and callee.extra:
            return self.call_function(callee.func, [callee.extra[0]] + args, kwargs, frame, node)
        if callee.kind == "class":
            return self.instantiate(callee.cls, node, frame, args, kwargs)
        if callee.kind == "module":
            return self.call_module(callee, args, kwargs, node, frame)
        merged = join(callee, *args, *kwargs.values())
        return Value("unknown", srcs=merged.srcs, cuts=merged.cuts, opaque=True)

    @staticmethod
    def object_now(receiver: Value, frame: Frame) -> Value:
        """An object with the attributes this method has set on `self` so far."""
        own = {k[5:]: v for k, v in frame.env.items() if k.startswith("self.") and k.count(".") == 1}
        if not own:
            return receiver
        attrs = dict(receiver.extra[1]) if receiver.extra and receiver.extra[0] == "object" else {}
        attrs.update(own)
        return replace(receiver, extra=("object", tuple(sorted(attrs.items(), key=lambda kv: kv[0]))))

    def instantiate(self, cls: ClassInfo, node: ast.Call, frame: Frame, args, kwargs) -> Value:
        if cls.is_module:
            label = f"<{cls.name}@{node.lineno}>"
            return Value("module", cls=cls, srcs=frozenset({label}), name=label, pending=True)
        init = cls.methods.get("__init__")
        env: dict[str, Value] = {}
        if init is not None:
            obj = Value("object", cls=cls)
            inner = Frame(cls.module, {}, FunctionInfo(init, cls.module, cls), obj, frame.grad_off)
            params = [a.arg for a in init.args.posonlyargs + init.args.args]
            inner.env[params[0] if params else "self"] = obj
            for name, value in zip(params[1:], args):
                inner.env[name] = value
            for a in init.args.args[1:] + init.args.kwonlyargs:
                inner.env.setdefault(a.arg, kwargs.get(a.arg, UNKNOWN))
            if self.depth < MAX_CALL_DEPTH:
                self.depth += 1
                try:
                    self.exec_block(init.body, inner)
                finally:
                    self.depth -= 1
            env = {k[5:]: v for k, v in inner.env.items() if k.startswith("self.") and k.count(".") == 1}
        merged = join(*args, *kwargs.values())
        return Value("object", cls=cls, srcs=EMPTY, cuts=merged.cuts, extra=("object", tuple(sorted(env.items()))))

    def call_module(self, module_value: Value, args, kwargs, node: ast.Call, frame: Frame) -> Value:
        children = next((e[1] for e in module_value.extra if isinstance(e, tuple) and e[0] == "children"), None)
        if children is not None and args and not kwargs:
            x = args[0]
            for index, child in enumerate(children):  # nn.Sequential(UserBlock(), ...): each child's forward
                child = named(child, f"{module_value.name}.{index}") if child.pending and module_value.name else child
                x = self.call_module(child, [x], {}, node, frame)
            return x
        info = module_value.cls if isinstance(module_value.cls, ClassInfo) else None
        if info is not None:
            found = info.find_method("forward") or info.find_method("__call__")
            if found:
                method, owner = found
                result = self.call_function(FunctionInfo(method, owner.module, owner,
                                                         self.grad_off_decorator(method, owner.module)),
                                            [module_value] + args, kwargs, frame, node)
                builtin = info.builtin_base()
                if builtin and not found[1].methods.get("forward"):
                    return combine("tensor", result, Value(srcs=module_value.srcs))
                return result
            builtin = info.builtin_base()
            if builtin:
                return combine("tensor", module_value, *args)
        layer = module_value.cls if isinstance(module_value.cls, str) else ""
        short = layer.split(".")[-1]
        if "inplace" in module_value.extra and args and args[0].kind == "tensor" and node.args:
            self.record_inplace(node, frame, args[0], node.args[0], f"{short}(inplace=True)", None)
        merged = combine("tensor", *args, *kwargs.values())
        srcs = merged.srcs | module_value.srcs
        saved = "module" if layer in api.SAVES_OUTPUT_MODULES else None
        if short in ("LSTM", "GRU", "RNN", "MultiheadAttention", "TransformerEncoderLayer"):
            out = Value("tensor", srcs=srcs, cuts=merged.cuts, opaque=merged.opaque)
            return out
        return Value("tensor", srcs=srcs, cuts=merged.cuts + module_value.cuts, opaque=merged.opaque, saved_by=saved)

    def call_function(self, func: FunctionInfo, args: list[Value], kwargs: dict[str, Value], frame: Frame,
                      node: ast.Call) -> Value:
        grad_off = frame.grad_off
        if func.grad_off_decorator is not None and grad_off is None:
            qn = func.module.names.qualname(func.grad_off_decorator.func if isinstance(func.grad_off_decorator, ast.Call)
                                            else func.grad_off_decorator) or "no_grad"
            grad_off = GradOff(node, "no_grad_helper", f"{func.name}() (decorated with @{qn.split('.')[-1]})",
                               frame.module, via=func.grad_off_decorator)
        key = (id(func.node), tuple(args), tuple(sorted(kwargs.items(), key=lambda kv: kv[0])),
               (grad_off.kind, id(grad_off.node)) if grad_off else None)
        if key in self.memo:
            result, sticky, sink = self.memo[key]
            if sticky is not None and frame.grad_off is None:
                frame.grad_off = sticky
            if sink is not None:
                frame.last_sink = sink
            return result
        if id(func.node) in self.active or self.depth >= MAX_CALL_DEPTH:
            merged = join(*args, *kwargs.values())
            return Value("unknown", srcs=merged.srcs, cuts=merged.cuts, opaque=True)
        inner = Frame(func.module, {}, func, None, grad_off)
        fargs = func.node.args
        positional = fargs.posonlyargs + fargs.args
        for index, a in enumerate(positional):
            # an unnamed model passed inline (`train(Net(), data)`) takes the parameter's name
            if index < len(args):
                inner.env[a.arg] = named(args[index], a.arg) if args[index].pending else args[index]
            elif a.arg in kwargs:
                inner.env[a.arg] = named(kwargs[a.arg], a.arg) if kwargs[a.arg].pending else kwargs[a.arg]
            else:
                default_index = index - (len(positional) - len(fargs.defaults))
                if 0 <= default_index < len(fargs.defaults):
                    inner.env[a.arg] = self.eval(fargs.defaults[default_index], Frame(func.module, {}))
                else:
                    inner.env[a.arg] = UNKNOWN
        for a, default in zip(fargs.kwonlyargs, fargs.kw_defaults):
            inner.env[a.arg] = kwargs.get(a.arg, self.eval(default, Frame(func.module, {})) if default else UNKNOWN)
        if fargs.vararg:
            extra = args[len(positional):]
            merged = join(*extra) if extra else Value()
            inner.env[fargs.vararg.arg] = Value("container", srcs=merged.srcs, cuts=merged.cuts, items=tuple(extra))
        if fargs.kwarg:
            extra_kw = [v for k, v in kwargs.items() if k not in {a.arg for a in positional + fargs.kwonlyargs}]
            merged = join(*extra_kw) if extra_kw else Value()
            inner.env[fargs.kwarg.arg] = Value("container", srcs=merged.srcs, cuts=merged.cuts,
                                               items=tuple(extra_kw) or None)
        if positional and func.cls is not None and args:
            inner.self_value = args[0]
        self.active.add(id(func.node))
        self.interpreted.add(id(func.node))
        self.depth += 1
        try:
            body = func.node.body if isinstance(func.node.body, list) else [ast.Return(func.node.body)]
            self.exec_block(body, inner)
        finally:
            self.depth -= 1
            self.active.discard(id(func.node))
        result = join(*inner.returns) if inner.returns else Value("none")
        if len(inner.returns) > 1:
            kinds = {r.kind for r in inner.returns}
            if len(kinds) == 1:
                result = self.join_keep(inner.returns)
        elif inner.returns:
            result = inner.returns[0]
        sticky = inner.grad_off if inner.grad_off is not None and inner.grad_off.sticky else None
        if sticky is not None and frame.grad_off is None:
            frame.grad_off = sticky
        if inner.last_sink is not None:
            frame.last_sink = inner.last_sink
        self.memo[key] = (result, sticky, inner.last_sink)
        return result

    def call_builtin(self, name: str, node: ast.Call, frame: Frame) -> Value:
        args, kwargs = self.eval_args(node, frame)
        first = args[0] if args else Value()
        if name in ("float", "int", "bool", "complex"):
            if first.srcs:
                return cut(first, node, "item", f"{name}()", var=node.args[0], result_kind="number",
                           module=frame.module)
            return Value("number", cuts=first.cuts)
        if name in ("list", "tuple", "sorted", "reversed", "set", "iter"):
            if first.kind in ("params", "named_params"):
                return Value("container", srcs=first.srcs, items=(self.element(first),), opaque=first.opaque)
            return Value("container", srcs=first.srcs, cuts=first.cuts, items=first.items, opaque=first.opaque)
        if name in ("sum", "max", "min", "abs", "round", "pow", "divmod"):
            if name == "round" and first.kind == "tensor" and first.srcs:
                return cut(first, node, "zero", "round()", var=node.args[0], zero=True, module=frame.module)
            merged = join(*args)
            if name in ("sum", "max", "min") and first.items:
                merged = join(*first.items, *args[1:])
            return Value(merged.kind if merged.kind != "container" else "unknown", srcs=merged.srcs, cuts=merged.cuts,
                         opaque=merged.opaque)
        if name == "range":
            return Value("range")
        if name == "len":
            return NUMBER
        if name == "enumerate":
            element = self.element(first)
            return Value("container", items=(Value("container", items=(NUMBER, element), opaque=element.opaque),),
                         srcs=first.srcs, cuts=first.cuts, opaque=first.opaque)
        if name == "zip":
            elements = tuple(self.element(a) for a in args)
            opaque = any(e.opaque for e in elements)
            pair = Value("container", items=elements, opaque=opaque)
            return Value("container", items=(pair,), srcs=join(*args).srcs if args else EMPTY, opaque=opaque)
        if name == "filter" and len(args) == 2:
            return args[1] if args[1].kind == "params" else Value("container", srcs=args[1].srcs,
                                                                  items=(self.element(args[1]),))
        if name == "map" and len(args) >= 2:
            merged = join(*args[1:])
            return Value("container", srcs=merged.srcs, cuts=merged.cuts, opaque=True)
        if name == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
            if first.kind == "module":
                return self.module_attribute(first, str(node.args[1].value), node, frame)
            return Value("unknown", srcs=first.srcs, opaque=True)
        if name in ("isinstance", "hasattr", "callable", "print", "id", "hash", "repr", "str", "type", "format"):
            return Value("other")
        if name == "super":
            return Value("super")
        merged = join(*args, *kwargs.values())
        return Value("unknown", srcs=merged.srcs, cuts=merged.cuts, opaque=True)

    # -------------------------------------------------------------- external (torch, numpy, math)
    def call_external(self, qn: str, node: ast.Call, frame: Frame) -> Value:
        args, kwargs = self.eval_args(node, frame)
        short = qn.split(".")[-1]
        root = qn.split(".")[0]
        module = frame.module
        first = args[0] if args else Value()
        every = join(*args, *kwargs.values()) if (args or kwargs) else Value()
        if root == "torch":
            if qn in api.GRAD_OFF_CONTEXTS:
                return Value("grad_ctx", extra=(qn, "off"))
            if qn in api.GRAD_ON_CONTEXTS:
                return Value("grad_ctx", extra=(qn, "on"))
            if qn in api.SET_GRAD_ENABLED:
                arg = node.args[0] if node.args else None
                mode = "off" if isinstance(arg, ast.Constant) and arg.value is False else (
                    "on" if isinstance(arg, ast.Constant) and arg.value is True else "unknown")
                return Value("grad_ctx", extra=(qn, mode))
            if qn in api.AUTOGRAD_GRAD:
                outputs = args[0] if args else kwargs.get("outputs", Value())
                sink = Sink(node, outputs, module, "autograd.grad", _text(node.args[0]) if node.args else "outputs")
                self.sinks.append(sink)
                frame.last_sink = sink
                inputs = args[1] if len(args) > 1 else kwargs.get("inputs", Value())
                flag = next((k.value for k in node.keywords if k.arg == "create_graph"),
                            node.args[4] if len(node.args) > 4 else None)
                grad = Value("tensor")
                if flag is not None and not (isinstance(flag, ast.Constant) and not flag.value):
                    # create_graph: the gradients are differentiable functions of what `outputs` came from
                    grad = Value("tensor", srcs=outputs.srcs, cuts=outputs.cuts, opaque=not isinstance(flag, ast.Constant))
                return Value("container", srcs=grad.srcs, cuts=grad.cuts, opaque=grad.opaque,
                             items=(grad,) * len(inputs.items or ()) or None)
            if qn.startswith(api.OPTIMIZER_PREFIXES) and short[:1].isupper() and "lr_scheduler" not in qn:
                coverage = join(*args[:1], kwargs.get("params", Value()))
                known = bool(coverage.srcs) or (not coverage.opaque and coverage.kind != "unknown")
                opt = Optimizer(node, module, coverage, known and bool(coverage.srcs), top=self.top_stmt)
                if id(node) not in self._seen_optimizer_nodes:
                    self._seen_optimizer_nodes.add(id(node))
                    self.optimizers.append(opt)
                return Value("optimizer", srcs=coverage.srcs, extra=(coverage,), opaque=not opt.known)
            if qn in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
                rg = node.keywords and any(k.arg == "requires_grad" and isinstance(k.value, ast.Constant)
                                           and k.value.value is False for k in node.keywords)
                if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and node.args[1].value is False:
                    rg = True
                label = f"<Parameter@{node.lineno}>"
                if rg:
                    return Value("tensor", cuts=first.cuts)
                cuts = first.cuts
                if first.srcs and frame.func is not None and frame.func.name == "forward":
                    # a new Parameter built from trained values on every forward: a fresh leaf, cut from them
                    cuts = cut(first, node, "rewrap", "nn.Parameter(...)", var=node.args[0] if node.args else None,
                               result_kind="tensor", module=module).cuts
                return Value("tensor", srcs=frozenset({label}), cuts=cuts, leaf=True, pending=True, name=label)
            if qn.startswith("torch.nn.") and short[:1].isupper() and not qn.startswith("torch.nn.functional"):
                if short in api.PARAMETERLESS_LAYERS:
                    return Value("module", cls=qn, extra=("inplace",) if _inplace_layer(node) else ())
                label = f"<{short}@{node.lineno}>"
                extra = ()
                if short == "Sequential" and args and all(a.kind == "module" for a in args) \
                        and any(isinstance(a.cls, ClassInfo) for a in args):
                    extra = (("children", tuple(args)),)  # followed in order when called: user layers inside
                return Value("module", cls=qn, srcs=frozenset({label}), name=label, pending=True, extra=extra)
            if qn.startswith("torch.nn.init."):
                return first
            if qn.startswith("torch.utils.checkpoint.") and args:
                callee = args[0]
                if callee.kind in ("function", "method", "module"):
                    fake = ast.Call(func=node.args[0], args=node.args[1:], keywords=[])
                    ast.copy_location(fake, node)
                    result = self.call_value(callee, fake, frame)
                else:
                    result = combine("tensor", *args)
                reentrant = not any(k.arg == "use_reentrant" and isinstance(k.value, ast.Constant)
                                    and k.value.value is False for k in node.keywords)
                if reentrant and not any(a.srcs for a in args[1:]) and result.srcs:
                    # reentrant checkpointing records nothing when no input requires grad
                    return cut(result, node, "checkpoint", "checkpoint(...)", var=node.args[0],
                               module=module)
                return result
            return self.torch_function(qn, short, node, frame, args, kwargs, first, every)
        if qn == "copy.deepcopy" and first.kind == "module":
            # a new model (an EMA or target copy): its own parameters, not the original's
            label = f"<copy@{node.lineno}>"
            return replace(first, srcs=frozenset({label}), name=label, pending=True, cuts=())
        if root == "math":
            if first.srcs and short not in ("pi", "e", "inf", "nan"):
                return cut(first, node, "math", f"math.{short}()", var=node.args[0] if node.args else None,
                           result_kind="number", module=module)
            return Value("number", cuts=every.cuts)
        if root == "numpy":
            tensor_args = [a for a in args if a.srcs]
            if tensor_args:
                merged = join(*tensor_args)
                return cut(merged, node, "numpy", f"np.{short}()", var=node.args[0] if node.args else None,
                           result_kind="array", module=module)
            return Value("array", cuts=every.cuts, intlike=short in ("argmax", "argmin", "argsort"))
        return Value("unknown", srcs=every.srcs, cuts=every.cuts, opaque=True)

    def torch_function(self, qn, short, node, frame, args, kwargs, first, every) -> Value:
        module = frame.module
        if short[:1].isupper() and short not in api.FACTORIES:
            # a torch class (GradScaler, Categorical, ...): an object, differentiable through its inputs
            return Value("unknown", srcs=every.srcs, cuts=every.cuts, opaque=True)
        requires_grad = any(k.arg == "requires_grad" and isinstance(k.value, ast.Constant) and k.value.value is True
                            for k in node.keywords)
        dtype = kwargs.get("dtype")
        dtype_qn = _dtype_name(node, module.names)
        if short in api.FACTORIES and (qn.count(".") == 1 or qn.startswith("torch.cuda.")):
            if short in api.REWRAP_FACTORIES and first.srcs:
                result = cut(first, node, "rewrap", f"torch.{short}()", var=node.args[0], result_kind="tensor",
                             module=module)
            elif short in ("as_tensor", "asarray"):
                result = replace(first, kind="tensor") if first.kind in ("tensor", "unknown") and first.srcs else Value(
                    "tensor", cuts=first.cuts)
                return result
            else:
                result = Value("tensor", cuts=every.cuts)
            intlike = short in api.INT_FACTORIES or (dtype_qn in api.INT_DTYPES) or (
                short in ("tensor", "arange", "full") and dtype_qn is None and _int_literal_data(node))
            if requires_grad:
                label = f"<tensor@{node.lineno}>"
                return Value("tensor", srcs=frozenset({label}), cuts=result.cuts, leaf=True, pending=True,
                             name=label, intlike=intlike, extra=("releaf",) if result.cuts else ())
            return replace(result, intlike=intlike)
        if short in api.INDEX_OPS:
            if first.srcs:
                return cut(first, node, "index", f"torch.{short}()", var=node.args[0] if node.args else None,
                           result_kind="tensor", module=module, intlike=True)
            return Value("tensor", cuts=every.cuts, intlike=True)
        if short in api.ZERO_GRAD_OPS:
            if first.srcs:
                return cut(first, node, "zero", f"torch.{short}()", var=node.args[0] if node.args else None,
                           zero=True, module=module)
            return Value("tensor", cuts=every.cuts)
        if short in api.COMPARE_METHODS:
            if every.srcs:
                return cut(every, node, "compare", f"torch.{short}()", var=node.args[0] if node.args else None,
                           result_kind="tensor", module=module, intlike=True)
            return Value("tensor", cuts=every.cuts, intlike=True)
        if short == "one_hot":
            if first.srcs:
                return cut(first, node, "index", "F.one_hot()", var=node.args[0], result_kind="tensor",
                           module=module, intlike=True)
            return Value("tensor", cuts=first.cuts, intlike=True)
        if short in api.VALUES_INDICES_OPS and qn.count(".") == 1:
            has_dim = (len(node.args) >= 2 and not (len(args) > 1 and args[1].kind == "tensor")) or "dim" in kwargs \
                or short in ("topk", "sort", "kthvalue", "mode", "cummax", "cummin")
            if has_dim:
                return Value("tensor", srcs=first.srcs, cuts=first.cuts, opaque=first.opaque,
                             extra=("values_indices", (node, module, f"torch.{short}()")))
            return combine("tensor", *args)
        if short in ("where",) and len(args) == 3:
            # no gradient flows into the condition: what cut it (a comparison) travels with the result
            result = combine("tensor", args[1], args[2])
            extra_cuts = tuple(c for c in args[0].cuts if c not in result.cuts)
            return replace(result, cuts=result.cuts + extra_cuts) if extra_cuts else result
        if short in ("stack", "cat", "concat", "concatenate", "hstack", "vstack", "dstack", "block_diag",
                     "einsum", "broadcast_tensors", "cartesian_prod", "meshgrid"):
            return combine("tensor", *args)
        if short == "from_numpy":
            return Value("tensor", cuts=first.cuts, intlike=first.intlike)
        saved = short if short in api.SAVES_OUTPUT else None
        if qn.startswith("torch.nn.functional.") and short in ("relu", "softmax", "log_softmax", "sigmoid", "tanh"):
            inplace = any(k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value for k in node.keywords)
            if inplace and first.kind == "tensor":
                self.record_inplace(node, frame, first, node.args[0], f"F.{short}(..., inplace=True)", None)
            saved = short
        if dtype is not None and dtype_qn in api.INT_DTYPES and every.srcs:
            return cut(every, node, "intcast", f"dtype={dtype_qn}", result_kind="tensor", module=module, intlike=True)
        return combine("tensor", *args, *kwargs.values(), saved_by=saved)

    def call_method(self, receiver: Value, method: str, node: ast.Call, frame: Frame) -> Value:
        module = frame.module
        if receiver.kind == "module":
            return self.module_method(receiver, method, node, frame)
        if receiver.kind == "external":
            return self.call_external(f"{receiver.extra[0]}.{method}", node, frame)
        if receiver.kind == "object" and isinstance(receiver.cls, ClassInfo):
            if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id == "self" and frame.self_value is not None:
                receiver = self.object_now(receiver, frame)  # `self.configure_optimizers()` inside __init__
            found = receiver.cls.find_method(method)
            args, kwargs = self.eval_args(node, frame)
            if found:
                return self.call_function(FunctionInfo(found[0], found[1].module, found[1],
                                                       self.grad_off_decorator(found[0], found[1].module)),
                                          [receiver] + args, kwargs, frame, node)
            merged = join(*args)
            return Value("unknown", srcs=merged.srcs, cuts=merged.cuts, opaque=True)
        if receiver.kind == "super":
            args, kwargs = self.eval_args(node, frame)
            if method == "forward" and frame.self_value is not None:
                return combine("tensor", *args, Value(srcs=frame.self_value.srcs))
            return Value("none")
        if receiver.kind == "method" or receiver.kind == "function":
            args, kwargs = self.eval_args(node, frame)
            return Value("unknown", srcs=join(*args).srcs if args else EMPTY, opaque=True)
        if receiver.kind == "optimizer":
            self.eval_args(node, frame)
            if method == "step":
                self.steps.append(Step(node, module, receiver, frame.last_sink))
            return Value("none")
        args, kwargs = self.eval_args(node, frame)
        if method in ("sample", "sample_n") and receiver.kind in ("unknown", "external") and receiver.srcs:
            # a distribution's draw has no graph (rsample() is the differentiable one): nothing is cut
            return Value("tensor", opaque=True)
        if method == "backward" and receiver.kind in ("tensor", "unknown"):
            sink = Sink(node, receiver, module, "backward", _text(node.func.value))
            self.sinks.append(sink)
            frame.last_sink = sink
            return Value("none")
        if receiver.kind in ("tensor", "unknown", "array", "number") or receiver.srcs or receiver.cuts:
            return self.tensor_method(receiver, method, node, frame, args, kwargs)
        if receiver.kind in ("container", "params", "named_params"):
            if method in ("values", "items", "keys", "copy"):
                return receiver
            if method in ("pop", "get"):
                return self.element(receiver)
            merged = join(receiver, *args)
            return Value("unknown", srcs=merged.srcs, cuts=merged.cuts, opaque=True)
        merged = join(receiver, *args, *kwargs.values())
        return Value("unknown", srcs=merged.srcs, cuts=merged.cuts, opaque=True)

    def module_method(self, receiver: Value, method: str, node: ast.Call, frame: Frame) -> Value:
        info = receiver.cls if isinstance(receiver.cls, ClassInfo) else None
        if info is not None:
            found = info.find_method(method)
            if found and method not in ("parameters", "named_parameters"):
                args, kwargs = self.eval_args(node, frame)
                return self.call_function(FunctionInfo(found[0], found[1].module, found[1],
                                                       self.grad_off_decorator(found[0], found[1].module)),
                                          [receiver] + args, kwargs, frame, node)
        args, kwargs = self.eval_args(node, frame)
        if method in ("parameters", "buffers"):
            return Value("params", srcs=receiver.srcs if method == "parameters" else EMPTY)
        if method == "named_parameters":
            return Value("named_params", srcs=receiver.srcs)
        if method in ("modules", "children", "named_modules", "named_children"):
            return Value("container", srcs=receiver.srcs, items=(Value("module", srcs=receiver.srcs),))
        if method == "requires_grad_":
            flag = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "requires_grad"), None)
            frozen = isinstance(flag, ast.Constant) and flag.value is False
            self.freezes.append(Freeze(node, frame.module, receiver.srcs, frozen, frame.conditional > 0))
            return receiver
        if method in ("to", "cuda", "cpu", "train", "eval", "double", "float", "half", "bfloat16", "apply",
                      "type", "share_memory", "requires_grad_", "zero_grad", "compile"):
            return receiver
        if method in ("forward", "__call__"):
            return self.call_module(receiver, args, kwargs, node, frame)
        if method in ("state_dict", "load_state_dict", "register_buffer", "register_parameter", "add_module",
                      "register_forward_hook", "register_full_backward_hook", "named_buffers", "extra_repr"):
            return Value("other")
        if method in ("append", "extend", "insert"):
            return Value("none")
        merged = join(*args, *kwargs.values())
        return Value("tensor" if merged.kind == "tensor" else "unknown", srcs=merged.srcs | receiver.srcs,
                     cuts=merged.cuts, opaque=True)

    def tensor_method(self, receiver: Value, method: str, node: ast.Call, frame: Frame, args, kwargs) -> Value:
        module = frame.module
        var = node.func.value  # spelled out only if a cut is recorded
        if method in ("numpy", "tolist") and not receiver.srcs and receiver.cuts and receiver.cuts[-1].kind == "detach" \
                and _contains(node.func.value, receiver.cuts[-1].node):
            last = receiver.cuts[-1]
            kind = "numpy" if method == "numpy" else "item"
            round_trip = Cut(node, kind, f"{last.op}{'.numpy()' if method == 'numpy' else '.tolist()'}", last.lost,
                             last.var, False, last.module)
            return Value("array" if method == "numpy" else "container", cuts=receiver.cuts[:-1] + (round_trip,),
                         opaque=receiver.opaque)
        if method in api.CUT_METHODS:
            kind, op, result_kind = api.CUT_METHODS[method]
            result = cut(replace(receiver, leaf=False), node, kind, op, var=var, result_kind=result_kind,
                         module=module)
            if method == "detach_":
                self.store(node.func.value, result, frame)
            if method == "tolist" and receiver.kind == "tensor":
                result = replace(result, items=None)
            return result
        if method in api.INT_CAST_METHODS and receiver.kind in ("tensor", "unknown"):
            if receiver.srcs:
                return cut(receiver, node, "intcast", f".{method}()", var=var, result_kind="tensor", module=module,
                           intlike=True)
            return replace(receiver, intlike=True, leaf=False)
        if method in ("to", "type") and node.args:
            dtype_qn = module.names.qualname(node.args[0])
            if dtype_qn in api.INT_DTYPES and receiver.srcs:
                return cut(receiver, node, "intcast", f".{method}({dtype_qn})", var=var, result_kind="tensor",
                           module=module, intlike=True)
        if method == "to" and any(k.arg == "dtype" for k in node.keywords):
            dtype_qn = _dtype_name(node, module.names)
            if dtype_qn in api.INT_DTYPES and receiver.srcs:
                return cut(receiver, node, "intcast", f".to(dtype={dtype_qn})", var=var, result_kind="tensor",
                           module=module, intlike=True)
        if method in api.INDEX_OPS:
            if receiver.srcs:
                return cut(receiver, node, "index", f".{method}()", var=var, result_kind="tensor", module=module,
                           intlike=True)
            return Value("tensor", cuts=receiver.cuts, intlike=True)
        if method in api.ZERO_GRAD_OPS or method.rstrip("_") in api.ZERO_GRAD_OPS:
            if receiver.srcs:
                return cut(receiver, node, "zero", f".{method}()", var=var, zero=True, module=module)
            return replace(receiver, leaf=False)
        if method in api.COMPARE_METHODS:
            merged = join(receiver, *args)
            if merged.srcs:
                return cut(merged, node, "compare", f".{method}()", var=var, result_kind="tensor", module=module,
                           intlike=True)
            return Value("tensor", cuts=merged.cuts, intlike=True)
        if method in api.VALUES_INDICES_OPS:
            has_dim = bool(node.args) or "dim" in kwargs or method in ("topk", "sort", "kthvalue", "mode")
            if has_dim and not (args and args[0].kind == "tensor"):
                return Value("tensor", srcs=receiver.srcs, cuts=receiver.cuts, opaque=receiver.opaque,
                             extra=("values_indices", (node, module, f".{method}()")))
            return combine("tensor", receiver, *args)
        if method == "requires_grad_":
            flag = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "requires_grad"), None)
            if isinstance(flag, ast.Constant) and flag.value is False:
                if receiver.srcs:
                    self.freezes.append(Freeze(node, module, receiver.srcs, True, frame.conditional > 0))
                return replace(receiver, srcs=EMPTY, leaf=False)
            if receiver.srcs:
                return receiver
            label = f"<tensor@{node.lineno}>"
            new_leaf = Value("tensor", srcs=frozenset({label}), cuts=receiver.cuts, leaf=True, pending=True, name=label,
                             extra=("releaf",))
            if isinstance(node.func.value, ast.Name):  # `loss.requires_grad_()` as a statement changes `loss`
                self.source_kind.setdefault(node.func.value.id, "releaf")
                self.store(node.func.value, named(new_leaf, node.func.value.id), frame)
            return new_leaf
        if method.endswith("_") and not method.startswith("_") and method not in api.NOT_REALLY_INPLACE:
            if receiver.kind == "tensor":
                self.record_inplace(node, frame, receiver, node.func.value, f".{method}()", None)
            merged = combine(receiver.kind, receiver, *args)
            if method in ("zero_", "fill_", "copy_") and method != "copy_":
                merged = cut(merged, node, "zero", f".{method}()", var=var, zero=True, module=module)
            new_value = replace(merged, leaf=receiver.leaf, name=receiver.name, saved_by=receiver.saved_by)
            if frame.grad_off is not None:
                # an update under no_grad keeps the tensor's own history; a fresh buffer filled from cut
                # values (`torch.zeros(n, d).index_add_(0, idx, msg)`) carries their cuts along
                new_value = receiver
                if not receiver.srcs:
                    new_value = replace(receiver, cuts=receiver.cuts + tuple(c for c in merged.cuts
                                                                             if c not in receiver.cuts))
            self.store(node.func.value, new_value, frame)
            return new_value
        if method in ("clone", "contiguous") and receiver.kind == "tensor":
            return replace(receiver, leaf=False, name=None, pending=False, saved_by=None)
        if method in ("size", "dim", "numel", "element_size", "nelement", "stride", "is_contiguous",
                      "data_ptr", "get_device", "is_floating_point"):
            return NUMBER
        if method in ("astype", "copy", "mean", "sum", "std", "max", "min", "reshape", "squeeze") and receiver.kind == "array":
            return Value("array", cuts=receiver.cuts)
        saved = method if method in api.SAVES_OUTPUT else None
        kind = receiver.kind if receiver.kind in ("tensor", "array", "number") else "unknown"
        if kind == "unknown" and receiver.srcs:
            kind = "tensor" if method in TENSOR_METHODS_HINT else "unknown"
        result = combine(kind, receiver, *args, *kwargs.values(), saved_by=saved,
                         intlike=receiver.intlike and method not in ("float", "double", "half", "softmax", "mean"))
        if method in ("float", "double", "half", "bfloat16") and receiver.intlike:
            result = replace(result, intlike=False)
        return result


EVAL_DISPATCH = {getattr(ast, name[5:]): fn for name, fn in vars(TorchFlow).items()
                 if name.startswith("eval_") and hasattr(ast, name[5:])}

BUILTINS = {"float", "int", "bool", "complex", "list", "tuple", "sorted", "reversed", "set", "iter", "sum", "max",
            "min", "abs", "round", "pow", "divmod", "len", "enumerate", "zip", "filter", "map", "getattr",
            "isinstance", "hasattr", "callable", "print", "id", "hash", "repr", "str", "type", "format", "super"}
AUG_SYMBOLS = {ast.Add: "+=", ast.Sub: "-=", ast.Mult: "*=", ast.Div: "/=", ast.Pow: "**=", ast.MatMult: "@=",
               ast.FloorDiv: "//=", ast.Mod: "%=", ast.BitAnd: "&=", ast.BitOr: "|=", ast.BitXor: "^="}
META_ATTRS = {"shape", "device", "dtype", "ndim", "requires_grad", "is_leaf", "grad_fn", "is_cuda", "layout",
              "names", "itemsize", "nbytes", "is_sparse", "is_quantized", "is_meta"}
TENSOR_ATTRS = {"data", "grad", "T", "mT", "H", "values", "indices"}
TENSOR_METHODS_HINT = {"view", "reshape", "mean", "sum", "pow", "exp", "log", "squeeze", "unsqueeze", "flatten",
                       "transpose", "permute", "softmax", "log_softmax", "sigmoid", "tanh", "relu", "matmul", "mm",
                       "bmm", "gather", "expand", "repeat", "norm", "abs", "clamp", "clamp_min", "to", "float"}


def _inplace_layer(call: ast.AST) -> bool:
    """`nn.ReLU(inplace=True)` and friends (also through `.to(...)` chains)."""
    return isinstance(call, ast.Call) and any(
        k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords)


def _contains(tree: ast.AST, node: ast.AST) -> bool:
    return any(sub is node for sub in ast.walk(tree))


def _is_zero(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and not isinstance(node.value, bool) and node.value == 0


def _before(a: ast.AST, b: ast.AST) -> bool:
    return (getattr(a, "lineno", 0), getattr(a, "col_offset", 0)) < (getattr(b, "lineno", 0), getattr(b, "col_offset", 0))


def _dtype_name(node: ast.Call, names: NameTable) -> str | None:
    for k in node.keywords:
        if k.arg == "dtype":
            return names.qualname(k.value)
    return None


def _int_literal_data(node: ast.Call) -> bool:
    """`torch.tensor([1, 2])`: data made only of int literals."""
    if not node.args:
        return False
    data = node.args[0]
    found_int = False
    for sub in ast.walk(data):
        if isinstance(sub, ast.Constant):
            if isinstance(sub.value, bool) or not isinstance(sub.value, int):
                return False
            found_int = True
        elif not isinstance(sub, (ast.List, ast.Tuple, ast.UnaryOp, ast.USub, ast.Load)):
            return False
    return found_int


def _read_before_written(loop: ast.stmt) -> frozenset[str]:
    """Names and dotted names (`self.h`) the loop body may read before it writes them, in textual order:
    the values one iteration hands to the next. Nested functions and classes are not looked into."""
    written: set[str] = set()
    exposed: set[str] = set()
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
                        name = _dotted(sub)
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
        name = _dotted(node)
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


COMPARE_SYMBOLS = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!="}


def _compare_text(node: ast.Compare) -> str:
    """`a > 0.5` as written when short, else `... > 0.5`: the comparison itself, not its operand."""
    whole = _text(node)
    if whole and not whole.endswith("..."):
        return whole
    parts = [f"{COMPARE_SYMBOLS.get(type(op), '?')} {_text(c)}" for op, c in zip(node.ops, node.comparators)]
    return "... " + " ".join(parts)


def _is_property(fn: ast.AST) -> bool:
    for deco in getattr(fn, "decorator_list", ()):
        name = deco.attr if isinstance(deco, ast.Attribute) else getattr(deco, "id", None)
        if name in ("property", "cached_property"):
            return True
    return False
