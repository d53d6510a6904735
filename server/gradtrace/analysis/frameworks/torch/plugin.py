"""PyTorch's meaning for the interpreter: tensors, modules, optimizers, grad modes and their events.

Sources are trainable things named by the access path that holds them (`net.backbone`, `W1`, `self.fc`):
modules built from `torch.nn` layers or project `nn.Module` classes, `nn.Parameter`s, tensors made with
`requires_grad=True`. Cuts are `.detach()`, `.data`, `.item()`/`.numpy()`, NumPy and `math`, re-wrapping with
`torch.tensor(t)`, argmax-like and integer results, rounding, comparisons, and `no_grad` regions. Sinks are
`backward()`, `torch.autograd.grad` and module outputs; optimizers and their steps, in-place writes and freezes
are recorded in the order the program runs.
"""

from __future__ import annotations

import ast
import bisect
from functools import cached_property

from gradtrace.analysis.core.frames import REPEATED, Frame, FunctionRef
from gradtrace.analysis.core.plugin import Plugin
from gradtrace.analysis.core.summaries import Renaming
from gradtrace.analysis.core.values import (
    EMPTY,
    NO_LITERAL,
    NONE,
    NUMBER,
    UNKNOWN,
    Cut,
    Value,
    combine,
    cut,
    dead_term,
    dedup_cuts,
    flat,
    is_symbolic,
    join,
    known_truth,
    literal_of,
    merge_terms,
    named,
    overlaps,
)
from gradtrace.analysis.core.values import expr_text as _text
from gradtrace.analysis.frameworks.common import compare_text, literal_dtype
from gradtrace.analysis.frameworks.torch import api
from gradtrace.analysis.frameworks.torch.events import (
    Carried,
    Defined,
    Freeze,
    GradOff,
    GradsCleared,
    GraphBuiltBeforeLoop,
    InPlace,
    IteratorUsedUp,
    LayerMadePerCall,
    LayerReplaced,
    LeafRebound,
    ModifiedBeforeBackward,
    NonLeafRequiresGrad,
    Optimizer,
    ParameterReassigned,
    Sink,
    StateCarried,
    Step,
    Surgery,
)
from gradtrace.analysis.frameworks.torch.module_state import state_read_back, writes_into_weights
from gradtrace.analysis.frameworks.torch.step_order import (
    cleared_before_step,
    stepped,
    symbolic_optimizer,
    to_none,
    touches,
)
from gradtrace.analysis.modules import ClassInfo, classify_value
from gradtrace.analysis.names import dotted
from gradtrace.records import replace

GRAD = "torch.grad_off"
CONTAINER_LAYERS = {"torch.nn.ModuleList", "torch.nn.Sequential", "torch.nn.modules.container.ModuleList",
                    "torch.nn.modules.container.Sequential"}
MAX_KNOWN_LAYERS = 64  # layers of one container told apart (more: the container is one opaque layer)
MULTI_VIEW = {"chunk", "split", "unbind", "tensor_split", "split_with_sizes", "hsplit", "vsplit", "dsplit"}
# methods whose result is a view of the tensor (`reshape` where the strides allow: splitting a dimension always
# does): a view of one of several views is one of them too
VIEW_METHODS = {"view", "view_as", "reshape", "permute", "transpose", "t", "unsqueeze", "squeeze", "narrow", "select",
                "expand", "expand_as", "unflatten", "movedim", "moveaxis", "swapaxes", "swapdims", "diagonal"}
TERM_KEEPING = {"mean", "sum", "squeeze", "unsqueeze", "view", "reshape", "flatten", "mul", "div", "add", "sub"}
CONSTRUCTION_METHODS = {"__init__", "__post_init__", "build", "setup", "reset_parameters", "init_weights",
                        "__setstate__", "load_state_dict"}
MODEL_PARAM_HINTS = ("model", "net", "encoder", "decoder", "policy", "actor", "critic", "generator",
                     "discriminator", "backbone", "head", "module", "layer", "classifier", "agent", "teacher",
                     "student")
AUG_SYMBOLS = {ast.Add: "+=", ast.Sub: "-=", ast.Mult: "*=", ast.Div: "/=", ast.Pow: "**=", ast.MatMult: "@=",
               ast.FloorDiv: "//=", ast.Mod: "%=", ast.BitAnd: "&=", ast.BitOr: "|=", ast.BitXor: "^="}
META_ATTRS = {"shape", "device", "dtype", "ndim", "requires_grad", "is_leaf", "grad_fn", "is_cuda", "layout",
              "names", "itemsize", "nbytes", "is_sparse", "is_quantized", "is_meta"}
TENSOR_ATTRS = {"data", "grad", "T", "mT", "H", "values", "indices"}
TENSOR_METHODS_HINT = {"view", "reshape", "mean", "sum", "pow", "exp", "log", "squeeze", "unsqueeze", "flatten",
                       "transpose", "permute", "softmax", "log_softmax", "sigmoid", "tanh", "relu", "matmul", "mm",
                       "bmm", "gather", "expand", "repeat", "norm", "abs", "clamp", "clamp_min", "to", "float"}
MODULE_PASSTHROUGH = {"to", "cuda", "cpu", "train", "eval", "double", "float", "half", "bfloat16", "apply", "type",
                      "share_memory", "requires_grad_", "zero_grad", "compile", "to_empty"}
RECURRENT = {"LSTM", "GRU", "RNN", "MultiheadAttention", "TransformerEncoderLayer"}


# The last word of an argument's name that says it holds data about a model, not a model (`encoder_attention_mask`,
# `decoder_input_ids`, `head_mask`, `layer_idx`, `module_name`)
DATA_NAME_ENDINGS = frozenset({"mask", "masks", "states", "state", "ids", "idx", "index", "indices", "dim", "dims",
                               "size", "sizes", "num", "type", "name", "names", "kwargs", "outputs", "embeds",
                               "shape", "length", "lengths", "positions", "config", "path", "fn", "scale"})
PARAMETER_NAME_ENDINGS = frozenset({"weight", "weights", "bias", "param", "params", "parameters"})
# What an annotation names when the argument is data: `encoder_hidden_states: Optional[torch.Tensor]`
DATA_ANNOTATIONS = frozenset({"Tensor", "LongTensor", "FloatTensor", "BoolTensor", "IntTensor", "ndarray",
                              "Generator", "int", "float", "bool", "str", "bytes", "Size", "dtype", "device"})


def param_value(arg: ast.arg) -> Value:
    """An argument of a function analysed on its own: a model-like name is a possible source, unless its name
    says it holds data about one or its annotation says it is a tensor, a number or a random generator."""
    name = arg.arg
    lowered = name.lower()
    if not any(h in lowered for h in MODEL_PARAM_HINTS) or lowered.rsplit("_", 1)[-1] in DATA_NAME_ENDINGS:
        return UNKNOWN
    if arg.annotation is not None and _annotates_data(arg.annotation) \
            and lowered.rsplit("_", 1)[-1] not in PARAMETER_NAME_ENDINGS:  # `lm_head_weight: Tensor` is a parameter
        return UNKNOWN
    return Value(kind="unknown", srcs=frozenset({name}), opaque=True, name=name, extra=("param",))


def _annotates_data(annotation: ast.expr) -> bool:
    """`torch.Tensor`, `Optional[torch.LongTensor]`, `torch.Generator | None`, `int`: data, and no model type."""
    named = {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(annotation)
             if isinstance(n, (ast.Name, ast.Attribute))}
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):  # a quoted annotation
        named = set(annotation.value.replace("[", " ").replace("]", " ").replace("|", " ").replace(",", " ")
                    .replace(".", " ").split())
    return bool(named & DATA_ANNOTATIONS) and not any("Module" in n or "Model" in n for n in named)


class TorchPlugin(Plugin):
    name = "torch"
    roots = frozenset({"torch"})

    def __init__(self, interp):
        super().__init__(interp)
        self.source_kind: dict[str, str] = {}  # source name -> param | leaf | module | attr | releaf
        self.definitions: dict[str, tuple] = {}  # source name -> (node, module) where it is defined
        # (id(cut node), cut kind) -> the variable that first held the cut value, for the cuts of the checked file
        # (those of an imported module are named on the module: `cut_names`)
        self.cut_vars: dict = {}
        self.last_sink: Sink | None = None
        self.releafed: dict = {}  # (id(loop), name) -> lines where the name is bound to a trainable leaf again
        self.aliases: dict = {}  # a fresh layer's placeholder label ("<Net@12>") -> the names it was bound to
        self.named = False  # placeholders renamed (once, after the run)
        # id(a summary's record) -> (that record, the definitions it already holds)
        self.defined_in: dict[int, tuple[list, set]] = {}
        self.records_with_optimizer: dict[int, list] = {}  # id(a summary's record) -> the record
        self._by_kind: dict = {}  # event class -> (events scanned, those of that class): read often, grown in order
        # (id(ClassInfo), attribute) -> the forward hooks registered on that layer from outside the class
        self.flag_parameters: dict = {}  # id(def) -> the parameters it sets `requires_grad` from
        self.flag_lines: dict = {}  # file path -> the lines that mention `requires_grad`
        self.forward_hooks: dict = {}
        self.hooks_set: dict = {}  # id(ClassInfo) -> attribute -> the hooks its methods register on `self.<attribute>`
        self.configurations: dict = {}  # id(constructor call) -> the literals that layer's constructor kept

    # ================================================================== facts in program order
    def events_of(self, kind) -> list:
        """The run's events of one class, in program order (kept up to date as events are appended)."""
        events = self.interp.events
        scanned, found = self._by_kind.get(kind, (0, []))
        if scanned > len(events):
            scanned, found = 0, []
        if scanned < len(events):
            found = found + [e for e in events[scanned:] if isinstance(e, kind)]
            self._by_kind[kind] = (len(events), found)
        return found

    @property
    def sinks(self) -> list:
        return self.events_of(Sink)

    @property
    def optimizers(self) -> list:
        """One per construction site: the first time it ran (a later standalone pass adds nothing)."""
        seen: set = set()
        out = []
        for e in self.events_of(Optimizer):
            if id(e.node) not in seen:
                seen.add(id(e.node))
                out.append(e)
        return out

    @property
    def steps(self) -> list:
        return self.events_of(Step)

    @property
    def inplace(self) -> list:
        return self.events_of(InPlace)

    @property
    def freezes(self) -> list:
        return self.events_of(Freeze)

    @property
    def surgeries(self) -> list:
        return self.events_of(Surgery)

    @property
    def nonleaf_flags(self) -> list:
        return self.events_of(NonLeafRequiresGrad)

    @property
    def carried(self) -> list:
        return self.events_of(Carried)

    @property
    def state_carried(self) -> list:
        return self.events_of(StateCarried)

    @property
    def graphs_built_before_loop(self) -> list:
        return self.events_of(GraphBuiltBeforeLoop)

    @cached_property
    def cleared_before_step(self) -> list:
        """(zero_grad event, step event) pairs where a step finds the gradients cleared (see `step_order`)."""
        return cleared_before_step(self.interp.events, self.run_starts)

    @cached_property
    def run_starts(self) -> list:
        """Where in the program's record each run of a function on its own begins (filled as runs start)."""
        return []

    def cut_var(self, c: Cut) -> str | None:
        """The variable that first held what `c` cut (for messages)."""
        return self.cut_names(c.module).get((id(c.node), c.kind))

    def cut_names(self, module) -> dict:
        """Where the names of the cuts in `module` are kept: with an imported module they live as long as its
        summaries do (a summary reused by the next file names its cuts as the run that made it did)."""
        if module is None or module is self.interp.root:
            return self.cut_vars
        names = getattr(module, "cut_vars", None)
        if names is None:
            names = module.cut_vars = {}
        return names

    def define(self, name: str, kind: str | None, node, module, frame: Frame) -> None:
        """Remember where source `name` is defined and what it is (through summaries: in caller's names)."""
        if name.startswith("$"):
            self.interp.emit(Defined(node, module, names=frozenset({name}), kind=kind), frame)
            return
        if node is not None:
            self.definitions.setdefault(name, (node, module))
        if kind is not None:
            self.source_kind.setdefault(name, kind)

    def being_built(self, owner: Value, frame: Frame) -> bool:
        """Is `owner` (a part of) the module the summarised constructor builds, with no optimizer built so far?"""
        func = frame.func
        me = frame.self_value
        if func is None or getattr(func.node, "name", None) != "__init__" or me is None or not me.name \
                or not owner.srcs or id(frame.events) in self.records_with_optimizer:
            return False
        root = me.name
        return all(s == root or s.startswith(root + ".") for s in owner.srcs)

    def emit(self, event, frame: Frame):
        if isinstance(event, Sink) and event.kind != "output" and event.value.captured:
            self.check_modified_before(event, frame)
        if isinstance(event, ModifiedBeforeBackward) and event.optimizer is not None:
            event = self.decide_modified(event, frame)
            if event is None:
                return None
        if isinstance(event, StateCarried) and event.loop is None and frame.loops and self.interp.call_sites:
            loop = next((lp for lp in reversed(frame.loops) if self.calls_backward(lp)), None)
            if loop is not None:  # the training loop that runs the method once per step
                event.loop, event.loop_module, event.call = loop, frame.module, self.interp.call_sites[-1]
        if isinstance(event, Freeze) and not frame.summarising and self.interp.call_sites:
            event.sites = tuple(self.interp.call_sites)
        if frame.summarising:
            if isinstance(event, Defined):  # the same definition from every call of a helper: copied once
                _, seen = self.defined_in.setdefault(id(frame.events), (frame.events, set()))
                key = (event.names, event.kind, id(event.node))
                if key in seen:
                    return REPEATED
                seen.add(key)
            elif isinstance(event, Optimizer):
                self.records_with_optimizer[id(frame.events)] = frame.events
            elif isinstance(event, LayerReplaced) and self.being_built(event.owner, frame):
                return REPEATED  # a layer of a module its constructor is building: no optimizer holds it yet
            elif isinstance(event, InPlace) and not event.target.srcs:
                return REPEATED  # a write to a tensor with no sources: no call site can give it one
            return event
        if isinstance(event, Defined):
            for name in event.names:
                if event.node is not None:
                    self.definitions.setdefault(name, (event.node, event.module))
                if event.kind is not None:
                    self.source_kind.setdefault(name, event.kind)
            return None
        if isinstance(event, LayerReplaced):
            return self.surgery(event)
        if isinstance(event, Sink) and event.kind != "output":
            self.last_sink = event
        elif isinstance(event, Step):
            event.last_sink = self.last_sink
        return event

    # ================================================================== grad mode
    def grad_off(self, frame: Frame) -> GradOff | None:
        return frame.state.get(GRAD)

    def set_grad_off(self, frame: Frame, value: GradOff | None) -> None:
        frame.state[GRAD] = value

    def after_value(self, node: ast.AST, value: Value, frame: Frame) -> Value:
        if type(node) is ast.BinOp and value.srcs and isinstance(node.op, ast.Mult) \
                and (_is_zero(node.left) or _is_zero(node.right)):
            # `x * 0`: an all-zero gradient flows back through this product; what reaches the output only
            # through it is lost (GT122), what also reaches it another way is not
            value = cut(value, node, "zeromask", "* 0", zero=True, module=frame.module)
        off = frame.state.get(GRAD)
        if off is None or not isinstance(node, (ast.Call, ast.BinOp, ast.UnaryOp, ast.Subscript)):
            return value
        return self.apply_grad_mode(value, frame)

    def apply_grad_mode(self, value: Value, frame: Frame) -> Value:
        off = frame.state.get(GRAD)
        if off is None or not value.srcs or value.kind in ("module", "params", "named_params", "optimizer",
                                                            "function", "class", "object"):
            return value
        if value.pending and value.leaf:
            return value  # a fresh `nn.Parameter` requires grad whatever the grad mode
        return cut(value, off.node, off.kind, off.op, module=off.module, via=off.via)

    def helper_grad_off(self, func: FunctionRef, node: ast.AST | None, module) -> GradOff | None:
        mark = func.mark("grad_off")
        if mark is None:
            if func.name == "backward" and isinstance(func.cls, ClassInfo) and func.cls.is_autograd_function:
                # autograd runs a custom Function's backward with gradients off (unless create_graph asks for them):
                # what it computes from the saved tensors has no history
                return GradOff(func.node, "function_backward", f"{func.cls.name}.backward", func.module)
            return None
        decorator = mark[1]
        qn = func.module.names.qualname(decorator.func if isinstance(decorator, ast.Call) else decorator) or "no_grad"
        return GradOff(node if node is not None else decorator, "no_grad_helper",
                       f"{func.name}() (decorated with @{qn.split('.')[-1]})", module, via=decorator)

    def context_key(self, frame: Frame, func: FunctionRef, node) -> tuple:
        off = frame.state.get(GRAD)
        flags = self.literal_flags(func, node)
        if off is None and func.mark("grad_off") is not None:
            return ("helper", id(node), *flags)
        return ((off.kind, id(off.node)) if off is not None else ()) + flags

    def requires_grad_lines(self, module) -> tuple:
        """The lines of a file that mention `requires_grad` (found once per file)."""
        found = self.flag_lines.get(module.path)
        if found is None:
            text = module.source.text
            found = self.flag_lines[module.path] = tuple(
                n for n, line in enumerate(text.splitlines(), 1) if "requires_grad" in line) if (
                "requires_grad" in text) else ()
        return found

    def literal_flags(self, func: FunctionRef, node) -> tuple:
        """((parameter, True/False), ...) for the parameters a helper sets `requires_grad` from
        (`p.requires_grad = flag`, `m.requires_grad_(flag)`), when this call gives them a literal or leaves the
        literal default: `set_requires_grad(net, False)` freezes."""
        key = id(func.node)
        names = self.flag_parameters.get(key)
        if names is None:
            lines = self.requires_grad_lines(func.module)
            first, last = getattr(func.node, "lineno", 0), getattr(func.node, "end_lineno", 0) or 0
            mentions = lines and any(first <= n <= last for n in lines)
            names = self.flag_parameters[key] = flag_parameters(func.node) if mentions else EMPTY
        if not names or not isinstance(node, ast.Call):
            return ()
        a = func.node.args
        positional = [p.arg for p in a.posonlyargs + a.args]
        given: dict = {}
        for p, default in zip(positional[len(positional) - len(a.defaults):], a.defaults):
            given[p] = default
        given.update({p.arg: d for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None})
        offset = len(func.bound) + (1 if func.cls is not None and positional[:1] == ["self"] and not func.bound else 0)
        for i, arg in enumerate(node.args):
            if isinstance(arg, ast.Starred):
                break
            if offset + i < len(positional):
                given[positional[offset + i]] = arg
        given.update({k.arg: k.value for k in node.keywords if k.arg})
        return tuple((name, given[name].value) for name in sorted(names)
                     if isinstance(given.get(name), ast.Constant) and isinstance(given[name].value, bool))

    def enter_function(self, func: FunctionRef, frame: Frame, caller: Frame | None, node) -> None:
        if caller is None and not frame.summarising:
            self.last_sink = None  # a function run on its own: an earlier run's loss is not what its steps follow
            self.run_starts.append(len(self.interp.events))
        off = caller.state.get(GRAD) if caller is not None else frame.state.get(GRAD)
        if off is None:
            off = self.helper_grad_off(func, node, caller.module if caller is not None else func.module)
        frame.state[GRAD] = off
        flags = self.literal_flags(func, node)
        if flags:
            frame.state[FLAGS] = dict(flags)

    def calls_backward(self, loop: ast.stmt) -> bool:
        """Does the loop's body call `backward()` (a training loop)?"""
        found = self.loops_calling_backward.get(id(loop))
        if found is None:
            found = self.loops_calling_backward[id(loop)] = any(
                isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "backward"
                for n in ast.walk(loop))
        return found

    @cached_property
    def loops_calling_backward(self) -> dict:
        return {}

    def enter_loop(self, loop: ast.stmt, frame: Frame) -> None:
        """A training loop begins: a place in the record (a placeholder) separates the graphs built before it from
        those its passes build (capture times are positions in the record)."""
        if self.calls_backward(loop):
            (frame.events if frame.events is not None else self.interp.events).append(REPEATED)

    def loop_pass(self, loop: ast.stmt, start: int, frame: Frame, iterable: Value | None) -> None:
        """A `backward()` the loop runs each pass, through sources its graph captured before the loop began (a forward
        pass made once, outside the loop): the second pass raises."""
        if (iterable is not None and iterable.srcs) or not self.calls_backward(loop):
            return  # a loop over losses or outputs: each pass differentiates its own graph
        # what the body reads before writing it, as the loop found it: a graph built before the loop enters through
        # one of these (`out` computed above the loop), not through what the body computes afresh
        carried_in: set = set()
        bringing: dict = {}
        for name in self.interp.exposed(loop):
            value = frame.env.get(name)
            if value is not None and value.kind in ("tensor", "container") and value.srcs:
                carried_in |= value.srcs
                bringing[name] = value.srcs
        if not carried_in:
            return
        record = frame.events if frame.events is not None else self.interp.events
        events = record[start:]
        for sink in events:
            if not isinstance(sink, Sink) or sink.kind != "backward" or not isinstance(sink.node, ast.Call):
                continue
            old = frozenset(src for src, t in sink.value.captured if t < start and not src.startswith("<")
                            and any(overlaps(src, c) for c in carried_in))
            # (`start` is the place after the loop's placeholder: a capture there happened in the loop)
            if not old:
                continue
            names = tuple(sorted(n for n, srcs in bringing.items() if touches(srcs, old)))
            if not any(k.arg == "retain_graph" for k in sink.node.keywords):
                self.interp.emit(GraphBuiltBeforeLoop(sink.node, sink.module, sink=sink, srcs=old, loop=loop,
                                                      names=names), frame)
                continue
            if len(old) < 2:
                continue  # one layer on data that needs no gradient saves no weight: a step cannot break it
            for step in events:
                if isinstance(step, Step) and step.module is sink.module:
                    changed = frozenset(s for s in old if any(overlaps(s, c) for c in stepped(step.optimizer)))
                    if changed:
                        self.interp.emit(GraphBuiltBeforeLoop(sink.node, sink.module, sink=sink, srcs=changed,
                                                              step=step, loop=loop, names=names), frame)
                        break

    def leave_function(self, func: FunctionRef, frame: Frame, result: Value) -> None:
        """A module's method that rebinds `self.<attr>` to a tensor with history after reading the attribute into
        its graph: the next call's graph reaches into this one (recurrent state kept on the module)."""
        if not frame.summarising or not frame.params or not isinstance(func.cls, ClassInfo) or not func.cls.is_module:
            return
        me = frame.params[0]
        for path in sorted(frame.mutated):
            root, _, attr = path.partition(".")
            value = frame.env.get(path)
            if root != me or not attr or "." in attr or value is None or not value.srcs \
                    or value.kind not in ("tensor", "container"):
                continue
            store = state_read_back(func.node, me, attr)
            if store is not None:
                self.interp.emit(StateCarried(store, func.module, attr=attr, owner=func.cls), frame)

    def summary_state(self, frame: Frame) -> dict:
        off = frame.state.get(GRAD)
        return {GRAD: off} if off is not None and off.sticky else {}

    def apply_summary_state(self, state: dict, frame: Frame) -> None:
        off = state.get(GRAD)
        if off is not None and frame.state.get(GRAD) is None:
            frame.state[GRAD] = off

    def statement(self, stmt: ast.stmt, frame: Frame) -> bool:
        off = frame.state.get(GRAD)
        if off is not None and off.kind == "function_backward" and not isinstance(stmt, ast.With):
            frame.state[GRAD] = replace(off, node=stmt)  # what a Function's backward computes is cut where it is
        if not isinstance(stmt, ast.Expr) or not isinstance(stmt.value, ast.Call):
            return False
        call = stmt.value
        qn = frame.module.names.qualname(call.func)
        if qn in api.SET_GRAD_ENABLED and call.args:
            enabled = call.args[0]
            if isinstance(enabled, ast.Constant) and enabled.value is False:
                frame.state[GRAD] = GradOff(call, "grad_disabled", "torch.set_grad_enabled(False)", frame.module,
                                            sticky=True)
            elif isinstance(enabled, ast.Constant) and enabled.value is True:
                frame.state[GRAD] = None
            return True
        return False

    def enter_with(self, item: ast.withitem, value: Value, frame: Frame):
        if value.kind != "grad_ctx":
            return None
        previous = frame.state.get(GRAD)
        qn, mode = value.extra[0], value.extra[1]
        if mode == "off":
            written = _text(item.context_expr) or f"{qn.split('.')[-1]}()"
            frame.state[GRAD] = GradOff(item.context_expr, "no_grad", f"with {written}", frame.module)
        elif mode == "on":
            frame.state[GRAD] = None
        return ("grad", previous)

    def exit_with(self, token, frame: Frame) -> None:
        if isinstance(token, tuple) and token[0] == "grad":
            current = frame.state.get(GRAD)
            if current is None or not current.sticky:
                frame.state[GRAD] = token[1]

    def decorate(self, qn, decorator, func: Value, frame: Frame):
        if qn in api.GRAD_OFF_CONTEXTS and func.func is not None:
            return replace(func, func=replace(func.func, marks=func.func.marks + (("grad_off", decorator),)))
        return None

    # ================================================================== binding
    def on_bind(self, name: str, value: Value, frame: Frame, stmt) -> Value:
        if "." in name and value.kind == "module" and any(isinstance(e, tuple) and e[:1] == ("made_in",)
                                                          for e in value.extra):
            # kept on the module (`self.fc = nn.Linear(...)` on first use): registered, not a throw-away layer
            value = replace(value, extra=tuple(e for e in value.extra if not (isinstance(e, tuple)
                                                                              and e[:1] == ("made_in",))))
        previous = frame.env.get(name)
        if previous is None and stmt is not None and "." not in name:
            previous = self.interp.lookup(name, frame)
        if previous is not None and stmt is not None and previous.kind == "tensor" and previous.leaf \
                and previous.srcs and not value.leaf and value.kind in ("tensor", "unknown") \
                and (value.srcs & previous.srcs or any(c.lost & previous.srcs for c in value.cuts)):
            reads_grad = _reads_attribute(stmt, name, "grad")
            self.interp.emit(LeafRebound(stmt, frame.module, name=name, grad_off=frame.state.get(GRAD) is not None,
                                         loop=frame.loops[-1] if frame.loops else None, reads_grad=reads_grad),
                             frame)
        if value.kind == "module" and value.pending and previous is not None and previous.kind == "module":
            self.note_replaced_model(name, frame, stmt)
        if value.pending and stmt is not None:
            self.define(name, None, stmt, frame.module, frame)
        value = self.name_value(value, name, frame)
        if value.leaf and value.srcs and stmt is not None:
            self.note_leaf(name, frame, stmt)
        off = frame.state.get(GRAD)
        for c in value.cuts[-4:]:
            # name what a no_grad region or helper produced after the variable that first holds it
            in_region = off is not None and off.node is c.node
            key = (id(c.node), c.kind)
            names = self.cut_names(c.module)
            if c.unnamed and key not in names and (in_region or (
                    stmt is not None and c.module is frame.module and _contains(stmt, c.node))):
                names[key] = name
        if value.kind == "optimizer" and isinstance(value.ref, Optimizer) and value.ref.var is None:
            value.ref.var = name
        return value

    def note_leaf(self, name: str, frame: Frame, node: ast.AST) -> None:
        """`name` holds a trainable leaf (again) at `node`, inside the loops of `frame`."""
        for loop in frame.loops:
            self.releafed.setdefault((id(loop), name), []).append(getattr(node, "lineno", 0))

    def name_value(self, value: Value, name: str, frame: Frame) -> Value:
        if value.pending:
            saved = bool(value.name and value.name.startswith("<saved@"))  # an input of a custom Function
            if value.name and value.name.startswith("<") and not name.startswith("$"):
                self.aliases.setdefault(value.name, set()).add(name)
            value = named(value, name)
            if value.srcs:
                kind = "releaf" if "releaf" in value.extra else ("leaf" if value.kind == "tensor" else "module")
                kind = "saved" if saved else kind
                self.define(name, kind, None, frame.module, frame)
        return value

    def check_modified_before(self, sink: Sink, frame: Frame) -> None:
        """Steps and in-place writes, after the graph captured a source and before this backward."""
        record = frame.events if frame.events is not None else self.interp.events
        found: dict = {}
        possible: dict = {}
        for src, t in sink.value.captured:
            for event in record[max(0, t + 1):]:
                if sink.arms and event.arms and sink.exclusive_with(event):
                    continue  # the other arm of a branch: never between this graph and this backward
                if isinstance(event, Step):
                    changed = stepped(event.optimizer)
                    op = f"{_text(event.node.func)}()" if isinstance(event.node, ast.Call) else ".step()"
                    if frame.summarising and is_symbolic(src) and symbolic_optimizer(event.optimizer) \
                            and not any(overlaps(src, c) for c in changed):
                        possible.setdefault(id(event), (event, op, set()))[2].add(src)
                        continue
                elif isinstance(event, InPlace) and event.target.leaf and event.grad_off:
                    changed, op = event.target.srcs, event.op
                else:
                    continue
                if any(overlaps(src, c) for c in changed):
                    found.setdefault(id(event), (event, op, set()))[2].add(src)
        for event, op, srcs in found.values():
            self.interp.emit(ModifiedBeforeBackward(event.node, event.module, sink=sink, srcs=frozenset(srcs),
                                                    op=op), frame)
        for event, op, srcs in possible.values():
            self.interp.emit(ModifiedBeforeBackward(event.node, event.module, sink=sink, srcs=frozenset(srcs),
                                                    op=op, optimizer=event.optimizer), frame)

    @staticmethod
    def decide_modified(event: ModifiedBeforeBackward, frame: Frame):
        """A possible step-before-backward from a helper's summary, at a call site: kept (and made certain) when the
        optimizer the caller handed over holds what the graph saved; kept as possible while both are still the
        arguments of an enclosing helper."""
        changed = stepped(event.optimizer)
        srcs = frozenset(s for s in event.srcs if any(overlaps(s, c) for c in changed))
        if srcs:
            event.srcs, event.optimizer = srcs, None
            return event
        if frame.summarising and symbolic_optimizer(event.optimizer) and any(is_symbolic(s) for s in event.srcs):
            return event
        return None

    @property
    def layers_made_per_call(self) -> list:
        return self.events_of(LayerMadePerCall)

    @property
    def leaf_rebounds(self) -> list:
        return self.events_of(LeafRebound)

    @property
    def parameter_reassignments(self) -> list:
        return self.events_of(ParameterReassigned)

    @property
    def modified_before_backward(self) -> list:
        seen: set = set()
        out = []
        for e in self.events_of(ModifiedBeforeBackward):
            key = (id(e.node), id(e.sink.node))
            if key not in seen:
                seen.add(key)
                out.append(e)
        return out

    def surgery(self, event: LayerReplaced):
        """A layer replaced after an optimizer that held the old one was built (in the program's order)."""
        if event.owner.kind == "object":  # `self.net` of a trainer: an optimizer its own class built over `self.net`
            semantic = event.module.source.semantic
            cls = semantic.enclosing_class(event.node)
            for opt in self.optimizers:
                if opt.known and opt.module.path == event.module.path and cls is not None and \
                        event.target in opt.coverage.srcs and semantic.enclosing_class(opt.node) is cls:
                    return Surgery(event.node, event.module, target=event.target, optimizer=opt)
            return None
        for opt in self.optimizers:
            if opt.known and opt.module.path == event.module.path and any(
                    overlaps(o, s) for o in event.owner.srcs for s in opt.coverage.srcs):
                return Surgery(event.node, event.module, target=event.target, optimizer=opt, parameter=event.parameter)
        return None

    def note_replaced_model(self, name: str, frame: Frame, stmt) -> None:
        """`model = Net()` again after an optimizer was built over the old `model`'s parameters."""
        if stmt is None:
            return
        scope = frame.func.node if frame.func is not None else None
        # those of the program so far, and those this function built itself while it is being summarised (`main()`)
        here = [e for e in frame.events if isinstance(e, Optimizer)] if frame.events is not None else []
        for opt in [*self.optimizers, *here]:
            # the same variable of the same function (a test's `model` is not another test's)
            if opt.known and opt.module is frame.module and opt.scope is scope and name in opt.coverage.srcs \
                    and _before(opt.node, stmt):
                self.interp.emit(Surgery(stmt, frame.module, target=name, optimizer=opt), frame)
                return

    def store_attribute(self, target: ast.Attribute, owner: Value, value: Value, frame: Frame, stmt) -> bool:
        attr = target.attr
        if attr == "requires_grad" and owner.kind in ("tensor", "unknown"):
            owner_key = dotted(target.value)
            flag = literal_flag(stmt.value if isinstance(stmt, ast.Assign) else None, frame)
            flag_true = isinstance(flag, ast.Constant) and flag.value is True
            flag_false = isinstance(flag, ast.Constant) and flag.value is False
            if flag_true and owner.kind == "tensor" and owner.srcs and not owner.leaf and not owner.opaque:
                self.interp.emit(NonLeafRequiresGrad(stmt, frame.module, var=owner_key or "tensor"), frame)
            elif not flag_false and owner_key and not owner.srcs:
                # `x.requires_grad = True` (or a flag we cannot read) makes `x` a trainable leaf
                self.interp.store_path(owner_key, replace(owner, kind="tensor", srcs=frozenset({owner_key}),
                                                          leaf=True, name=owner_key,
                                                          opaque=owner.opaque or not flag_true, fw="torch"),
                                       frame, mutation=True)
                self.note_leaf(owner_key, frame, stmt)
                self.define(owner_key, "leaf", None, frame.module, frame)
            elif (flag_false or flag_true) and owner.srcs and (flag_false or owner.leaf):
                # freezing, or unfreezing a trainable leaf (a parameter of a model)
                self.interp.emit(Freeze(stmt, frame.module, srcs=owner.srcs, frozen=flag_false,
                                        conditional=frame.conditional > 0), frame)
            return True
        key = dotted(target)
        info = owner.cls if isinstance(owner.cls, ClassInfo) else None
        if owner.kind == "module" and info is not None and stmt is not None and info.is_module \
                and (value.kind == "tensor" or (value.kind == "unknown" and value.srcs)) \
                and not (value.pending and value.leaf):
            fact = info.find_attr(attr)
            if fact is not None and fact.stmt is not stmt and registered_parameter(fact) \
                    and not _registered_later(fact, frame) and not _assigns_parameter(stmt, frame.module):
                self.interp.emit(ParameterReassigned(stmt, frame.module, owner=info, attr=attr), frame)
        fresh_parameter = value.kind == "tensor" and value.pending and value.leaf
        if owner.kind == "object" and key and key.startswith("self.") and key.count(".") == 1 and value.kind == \
                "module" and value.pending and isinstance(stmt, ast.Assign) and info is not None and \
                getattr(frame.func.node if frame.func else None, "name", None) != "__init__":
            # a trainer's `self.net = Net()` in a method run after its optimizer was built over the old `self.net`
            self.interp.emit(LayerReplaced(stmt, frame.module, owner=owner, target=key), frame)
        if owner.kind == "module" and key and (value.kind == "module" or fresh_parameter) and stmt is not None \
                and owner.srcs:
            self.interp.emit(LayerReplaced(stmt, frame.module, owner=owner, target=key, parameter=fresh_parameter),
                             frame)
        return False

    def store_subscript(self, target: ast.Subscript, base: Value, value: Value, frame: Frame, stmt) -> bool:
        if base.kind != "tensor":
            return False
        self.record_inplace(target, frame, base, target.value, f"{_text(target)} = ...", stmt)
        merged = combine("tensor", base, value)
        self.interp.store(target.value, self.apply_grad_mode(merged, frame), frame, mutation=True)
        return True

    def augassign(self, stmt: ast.AugAssign, target: Value, value: Value, frame: Frame):
        if target.kind == "container":
            return replace(join(target, value), kind="container")
        if target.kind != "tensor":
            if isinstance(stmt.op, ast.Mult) and _is_zero(stmt.value) and target.srcs:
                return cut(combine(target.kind, target, value), stmt, "zero", "* 0", zero=True, module=frame.module)
            return None
        symbol = AUG_SYMBOLS.get(type(stmt.op), "op=")
        self.record_inplace(stmt, frame, target, stmt.target, f"{_text(stmt.target)} {symbol} ...", stmt)
        result = replace(combine("tensor", target, value, dtype=target.dtype),
                         terms=self.interp.sum_terms(stmt, stmt.op, target, value))
        if isinstance(stmt.op, ast.Mult) and _is_zero(stmt.value):
            result = cut(result, stmt, "zero", "* 0", zero=True, module=frame.module)
        if frame.state.get(GRAD) is not None:
            return False  # an in-place update under no_grad keeps the tensor's own history
        result = replace(result, leaf=False)
        return self.apply_grad_mode(result, frame)

    def record_inplace(self, node: ast.AST, frame: Frame, target: Value, target_node: ast.AST | None, op: str,
                       stmt, var: str | None = None) -> None:
        var = var or dotted(target_node) or _short_text(target_node) or "tensor"
        self.interp.emit(InPlace(node, frame.module, target=target, var=var, op=op,
                                 grad_off=frame.state.get(GRAD) is not None, stmt=stmt), frame)

    def loop_carry(self, loop, entry: dict, after_first: dict, frame: Frame) -> None:
        carried = sorted(name for name, v in after_first.items()
                         if "." not in name and v.srcs and v.kind == "tensor" and not v.opaque
                         and entry.get(name) is not v)
        if carried:
            self.interp.emit(Carried(loop, frame.module, names=carried), frame)

    # ================================================================== operators
    def compare(self, node: ast.Compare, values: list, frame: Frame):
        if any(isinstance(op, (ast.Is, ast.IsNot, ast.In, ast.NotIn)) for op in node.ops):
            return Value("number", dtype="bool")
        if not any(v.kind == "tensor" for v in values):
            return None
        merged = join(*values)
        if merged.srcs:
            return cut(merged, node, "compare", compare_text(node), var=node.left, result_kind="tensor",
                       module=frame.module, dtype="bool", fw="torch")
        return Value("tensor", cuts=merged.cuts, dtype="bool", fw="torch", deps=merged.deps)

    @staticmethod
    def saved_tensor(container: Value, index: int) -> Value:
        """One tensor of a custom Function's `ctx.saved_tensors`: an input of the Function, named where bound."""
        node = container.extra[1]
        label = f"<saved@{node.lineno}.{index}>"
        return Value("tensor", srcs=frozenset({label}), leaf=True, pending=True, name=label, fw="torch")

    def unpack(self, value: Value, n: int) -> list | None:
        if value.extra[:1] == ("saved_tensors",):
            return [self.saved_tensor(value, i) for i in range(n)]
        return None

    def subscript(self, node: ast.Subscript, base: Value, index: Value, frame: Frame):
        if base.extra[:1] == ("saved_tensors",):
            return self.saved_tensor(base, _literal_index(node.slice))
        if "values_indices" in base.extra and isinstance(node.slice, ast.Constant) and node.slice.value in (0, 1):
            return self.values_of(base) if node.slice.value == 0 else self.indices_of(base)
        if base.kind == "module" and base.items is None:  # nn.Sequential / ModuleList indexing
            return Value("module", srcs=base.srcs, name=base.name, deps=base.deps)
        return None

    def values_of(self, value: Value) -> Value:
        return replace(value, extra=tuple(e for e in value.extra if e != "values_indices"
                                          and not (isinstance(e, tuple) and e[:1] == ("vi",))), items=None)

    def indices_of(self, value: Value) -> Value:
        node, module, op = next(e[1] for e in value.extra if isinstance(e, tuple) and e[:1] == ("vi",))
        return cut(value, node, "index", op + ".indices", result_kind="tensor", module=module, dtype="int")

    def element(self, value: Value) -> Value | None:
        if value.kind == "params":
            return Value("tensor", srcs=value.srcs, leaf=bool(value.srcs), opaque=value.opaque, fw="torch",
                         deps=value.deps)
        if value.kind == "named_params":
            return Value("container", items=(Value("str"), Value("tensor", srcs=value.srcs, leaf=bool(value.srcs),
                                                                 fw="torch", deps=value.deps)),
                         srcs=value.srcs, deps=value.deps)
        if value.kind == "module":  # nn.Sequential / ModuleList iteration
            cls = next((e[1] for e in value.extra if isinstance(e, tuple) and e[:1] == ("element_cls",)), None)
            return Value("module", srcs=value.srcs, name=None, deps=value.deps, cls=cls)
        return None

    # ================================================================== attributes
    def attribute(self, base: Value, attr: str, node: ast.AST, frame: Frame):
        if attr == "saved_tensors" and frame.state.get(GRAD) is not None \
                and frame.state[GRAD].kind == "function_backward":
            return Value("container", extra=("saved_tensors", node))  # what forward's `ctx.save_for_backward` kept
        if attr in META_ATTRS and base.kind not in ("module", "object"):
            return Value("meta")  # shapes, dtypes and flags carry no gradient
        if base.kind == "module":
            return self.module_attribute(base, attr, node, frame)
        if base.kind == "tensor" or (base.kind == "unknown" and attr in TENSOR_ATTRS):
            if attr == "data":
                return cut(replace(base, leaf=False), node, "data", ".data",
                           var=node.value if isinstance(node, ast.Attribute) else None, module=frame.module)
            if attr == "grad":
                return Value("tensor", opaque=base.opaque, fw="torch")
            if attr in ("T", "mT", "H", "mH", "real", "imag"):
                return replace(base, leaf=False, name=None, saved_by=None, pending=False)
            if attr == "values" and "values_indices" in base.extra:
                return self.values_of(base)
            if attr == "indices" and "values_indices" in base.extra:
                return self.indices_of(base)
            return Value("unknown", srcs=base.srcs, cuts=base.cuts, opaque=True, deps=base.deps)
        if base.kind == "unknown" and base.srcs and base.name:
            name = f"{base.name}.{attr}"
            self.define(name, self.source_kind.get(base.name, "attr"), None, frame.module, frame)
            return Value("unknown", srcs=frozenset({name}), opaque=True, name=name, extra=("param",), deps=base.deps)
        if base.kind == "optimizer" and attr == "param_groups":
            return Value("container", srcs=base.srcs, deps=base.deps)
        return None

    def module_attribute(self, base: Value, attr: str, node, frame: Frame) -> Value:
        prefix = base.name or (next(iter(base.srcs)) if len(base.srcs) == 1 else None)
        name = f"{prefix}.{attr}" if prefix else None
        info = base.cls if isinstance(base.cls, ClassInfo) else None
        if info is not None:
            found = info.find_method(attr)
            if found:
                return self.interp.method_value(base, found, frame, node)
            fact = info.find_attr(attr)
            given = next((dict(e[1]) for e in base.extra if isinstance(e, tuple) and e[:1] == ("given",)), None)
            if given is not None and attr in given:
                return given[attr]
            if fact is not None and name:
                if fact.kind == "param" and frozen_parameter(fact.value):
                    return Value("tensor", fw="torch", deps=base.deps)  # `nn.Parameter(t, requires_grad=False)`
                self.define(name, "module" if fact.kind == "module" else (
                    "leaf" if fact.kind in ("param", "tensor_grad") else None), fact.stmt, info.module, frame)
                if fact.kind == "module":
                    cls = info.module.resolve_class(fact.layer) if fact.layer and "." not in fact.layer else None
                    extra = ("inplace",) if _inplace_layer(fact.value) else ()
                    srcs = frozenset({name}) if not (fact.layer and fact.layer.split(".")[-1] in
                                                     api.PARAMETERLESS_LAYERS) else EMPTY
                    items, sequential = self.container_layers(fact, info, name, base.deps)
                    if items is not None and not _followed_in_order(items, sequential):
                        # PyTorch's own layers only: the container is one layer, its elements of one class if alike
                        if len({layer.cls for layer in items}) == 1 and isinstance(items[0].cls, str):
                            extra += (("element_cls", items[0].cls),)
                        items = None
                    if items is not None and not (fact.layer or "").endswith("ModuleList"):
                        extra += (("children", items),)  # called: each layer in turn
                    if id(info) not in self.hooks_set:
                        self.hooks_set[id(info)] = forward_hooks_set(info)
                    hooks = self.hooks_set[id(info)].get(attr)
                    if hooks:
                        extra += (("hooks", tuple((h, base) for h in hooks)),)
                    if (id(info), attr) in self.forward_hooks:
                        extra += (("hooked", tuple(self.forward_hooks[(id(info), attr)])),)
                    if self.hooks_in_file:  # where a helper given this layer may register a hook on it
                        extra += (("attribute_of", (id(info), attr)),)
                    if isinstance(cls, ClassInfo):
                        extra += self.configuration(fact.value, cls, info, frame)
                    return Value("module", srcs=srcs, name=name, cls=cls or fact.layer, extra=extra, deps=base.deps,
                                 items=items)
                if fact.kind in ("param", "tensor_grad") or (fact.kind == "param_converted"
                                                              and registered_parameter(fact)):
                    return Value("tensor", srcs=frozenset({name}), name=name, leaf=True, fw="torch", deps=base.deps)
                if fact.kind == "param_converted":  # a copy of a parameter: computed from it, not a leaf
                    return Value("tensor", srcs=frozenset({name}), name=name, fw="torch", deps=base.deps)
                if fact.kind == "modules_container":
                    item = Value("module", srcs=frozenset({name}), name=name)
                    return Value("container", srcs=frozenset({name}), items=(item,), name=name, deps=base.deps)
                if fact.kind == "params_container":
                    item = Value("tensor", srcs=frozenset({name}), name=name, leaf=True, fw="torch")
                    return Value("container", srcs=frozenset({name}), items=(item,), name=name, deps=base.deps)
                if fact.kind == "tensor":
                    return Value("tensor", fw="torch")
                if fact.kind == "other" and fact.method == "__init__" and base.srcs and (
                        isinstance(fact.value, ast.Name) and info.calls_attr(attr)
                        or (_built_by_argument(fact, info) or _built_by_factory(fact, info)) and _called_here(node, frame)):
                    # `self.module = module`, called in forward, given nothing we saw (a layer of a container):
                    # what it computes depends on the parameters it holds
                    self.define(name, "module", None, info.module, frame)
                    return Value("module", srcs=frozenset({name}), name=name, deps=base.deps)
                return UNKNOWN
            builtin = info.builtin_base()
            if builtin and name and attr in api.BUILTIN_PARAMS.get(builtin.split(".")[-1], ()):
                self.define(name, "leaf", None, frame.module, frame)
                return Value("tensor", srcs=frozenset({name}), name=name, leaf=True, fw="torch", deps=base.deps)
            if attr in ("training",):
                return Value("number", dtype="bool")
            return UNKNOWN
        layer = base.cls if isinstance(base.cls, str) else None
        if layer and name and attr in api.BUILTIN_PARAMS.get(layer.split(".")[-1], ()):
            self.define(name, "leaf", None, frame.module, frame)
            return Value("tensor", srcs=frozenset({name}), name=name, leaf=True, fw="torch", deps=base.deps)
        if layer and attr in api.LAYER_CONFIG_ATTRIBUTES and api.is_layer_class(layer):
            return UNKNOWN  # `self.conv.kernel_size`: configuration, no gradient
        if name and base.srcs:
            return Value("module", srcs=frozenset({name}), name=name, deps=base.deps)
        return UNKNOWN

    def configuration(self, call, cls: ClassInfo, owner: ClassInfo, frame: Frame) -> tuple:
        """The literal flags a layer built in a constructor keeps (`self.b = ConvBN(3, 8, activation='relu')`, or
        a default of its `__init__`), as the `given` of that layer: its `forward` takes the branches they decide.
        Arguments that are not literals are unknown; the constructor's events stay with its own analysis."""
        key = id(call)
        if key not in self.configurations:
            self.configurations[key] = ()
            init = cls.find_method("__init__") if isinstance(call, ast.Call) else None
            kept = injected_attributes(cls) & flag_attributes(cls) if init is not None and _takes_literals(
                call, init[0]) else ()
            if kept and not any(isinstance(a, ast.Starred) for a in call.args) \
                    and all(k.arg is not None for k in call.keywords):
                args = [self.interp.eval(a, frame) if isinstance(a, ast.Constant) else UNKNOWN for a in call.args]
                kwargs = {k.arg: self.interp.eval(k.value, frame) if isinstance(k.value, ast.Constant) else UNKNOWN
                          for k in call.keywords}
                aside = Frame(owner.module, {}, frame.func, frame.self_value, dict(frame.state), events=[])
                layer = Value("module", cls=cls, name=f"<{cls.name}@{call.lineno}>")
                attrs = self.interp.construct(cls, layer, call, aside, args, kwargs)
                given = tuple(sorted((k, v) for k, v in attrs.items() if k in kept and literal_of(v) is not NO_LITERAL))
                self.configurations[key] = (("given", given),) if given else ()
        return self.configurations[key]

    @staticmethod
    def container_layers(fact, info: ClassInfo, name: str, deps) -> tuple[tuple | None, bool]:
        """The layers an `nn.ModuleList` / `nn.Sequential` attribute holds, from the expression that built it:
        one per layer written out (`name.0`, `name.1`...), or one for all when a comprehension builds them
        (`name.*`); None when one of them is not a layer we know. And: is it an `nn.Sequential`?"""
        found = info.find_method(fact.method)
        owner = found[1] if found else info
        module = owner.module
        call, container = fact.value, fact.layer
        if container is None and isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
            # `self.body = make_mlp(...)`, a same-file factory that returns `nn.Sequential(...)`
            factory = module.functions.get(call.func.id)
            returns = [n.value for n in ast.walk(factory) if isinstance(n, ast.Return)] if factory else []
            if len(returns) == 1 and isinstance(returns[0], ast.Call):
                call, container = returns[0], module.names.qualname(returns[0].func)
                found = (factory, owner)
        if container not in CONTAINER_LAYERS or not isinstance(call, ast.Call):
            return None, False
        if container.endswith("ModuleList"):  # its one argument holds the layers
            if len(call.args) != 1 or call.keywords:
                return None, False
            written = [(call.args[0], True)]
        else:  # nn.Sequential(a, b, *more)
            written = [(a.value, True) if isinstance(a, ast.Starred) else (a, False) for a in call.args]
        elements: list = []  # (expression of a layer, does it stand for every layer of a comprehension?)
        for expr, holds_layers in written:
            if not holds_layers:
                elements.append((expr, False))
            elif isinstance(expr, (ast.List, ast.Tuple)):
                elements.extend((e, False) for e in expr.elts)
            elif isinstance(expr, (ast.ListComp, ast.GeneratorExp)):
                elements.append((expr.elt, True))
            else:
                return None, False
        if not elements or len(elements) > MAX_KNOWN_LAYERS:
            return None, False
        items = []
        defaults = _defaults(found[0]) if found else {}
        for index, (element, for_all) in enumerate(elements):
            kind, layer, _ = classify_value(element, module)
            if kind != "module" and isinstance(element, ast.Call) and isinstance(element.func, ast.Name) \
                    and isinstance(defaults.get(element.func.id), (ast.Name, ast.Attribute)):
                # `block_fn(dim)` with `block_fn=Block` in the constructor's signature: a Block (or what is given)
                kind, layer, _ = classify_value(ast.Call(func=defaults[element.func.id], args=[], keywords=[]), module)
            if kind != "module" or not layer:
                return None, False
            cls = module.resolve_class(layer) if "." not in layer else None
            item_name = f"{name}.*" if for_all else f"{name}.{index}"  # `*`: every layer the comprehension made
            srcs = EMPTY if layer.split(".")[-1] in api.PARAMETERLESS_LAYERS else frozenset({item_name})
            extra = ("inplace",) if _inplace_layer(element) else ()
            items.append(Value("module", srcs=srcs, name=item_name, cls=cls or layer, deps=deps, extra=extra,
                               made_at=element))
        return tuple(items), container.endswith("Sequential")

    def external_attribute(self, qn: str, node, frame: Frame):
        if qn.startswith("torch.") and qn in api.INT_DTYPES | api.FLOAT_DTYPES:
            return Value("meta", extra=("dtype", qn))
        return None

    # ================================================================== calls
    def make_optimizer(self, node: ast.Call, frame: Frame, args: list, kwargs: dict) -> Value:
        """A torch.optim optimizer (or a project subclass of one) built over its first argument."""
        interp = self.interp
        given = args[0] if args else kwargs.get("params", Value())
        coverage = join(*args[:1], kwargs.get("params", Value()))
        known = bool(coverage.srcs) or (not coverage.opaque and coverage.kind != "unknown")
        filters = tuple(e for e in given.extra if isinstance(e, tuple) and e[:1] == ("requires_grad_filter",))
        if filters:  # what it holds was filtered by `requires_grad` where it was handed over
            coverage = replace(coverage, extra=coverage.extra + filters)
        for iterator in _iterators(given):
            first = interp.consume(iterator, node, frame)
            if first is not None:
                interp.emit(IteratorUsedUp(node, frame.module, made=iterator.oneshot, first=first,
                                           whole=iterator is given), frame)
        opt = Optimizer(node, frame.module, coverage=coverage, known=known and bool(coverage.srcs),
                        top=interp.top_stmt, scope=frame.func.node if frame.func is not None else None,
                        non_leaf=_non_leaf(given))
        opt = interp.emit(opt, frame) or opt
        return Value("optimizer", srcs=coverage.srcs, ref=opt, opaque=not opt.known, deps=coverage.deps)

    def instantiate(self, cls, node: ast.Call, frame: Frame, args, kwargs):
        if isinstance(cls, ClassInfo) and cls.is_optimizer:
            return self.make_optimizer(node, frame, args, kwargs)
        if isinstance(cls, ClassInfo) and cls.is_module:
            label = f"<{cls.name}@{node.lineno}>"
            extra = self.made_in_method(node, frame) if cls.has_parameters() else ()
            module = Value("module", cls=cls, srcs=frozenset({label}), name=label, pending=True, extra=extra)
            for path, stmt, conditional in cls.constructor_freezes:
                self.interp.emit(Freeze(stmt, cls.module, srcs=frozenset({f"{label}.{path}"}), frozen=True,
                                        conditional=conditional or frame.conditional > 0), frame)
            if injected_attributes(cls):
                # `self.net = net`: what the constructor was given becomes part of the module
                attrs = self.interp.construct(cls, replace(module, pending=False), node, frame, args, kwargs)
                given = tuple(sorted((k, v) for k, v in attrs.items() if k in injected_attributes(cls)
                                     and (v.srcs or v.kind in ("module", "optimizer", "none", "number", "str"))))
                if given:
                    module = replace(module, extra=extra + (("given", given),))
            return module
        return None

    @staticmethod
    def made_in_method(node: ast.Call, frame: Frame) -> tuple:
        """A mark on a layer built in a module's method other than its constructors."""
        func = frame.func
        if func is None or not isinstance(func.cls, ClassInfo) or not func.cls.is_module \
                or func.name in CONSTRUCTION_METHODS or func.name.startswith(("_init", "_build", "_make", "build")) \
                or func.mark("classmethod") or func.mark("staticmethod"):
            return ()
        return (("made_in", node, func.name, id(func.node)),)

    def call_object(self, callee: Value, node, frame: Frame, args, kwargs):
        if callee.kind == "module":
            return self.call_module(callee, args, kwargs, node, frame)
        return None

    def call_module(self, module_value: Value, args, kwargs, node, frame: Frame) -> Value:
        """`layer(x)`: its forward, then each forward hook registered on it (a hook that returns a value replaces
        the output: `return output.detach()` cuts the layer and everything before it)."""
        result = self.forward(module_value, args, kwargs, node, frame)
        layer = module_value.cls if isinstance(module_value.cls, str) else ""
        if layer.rsplit(".", 1)[-1] in api.SAVES_INPUT_LAYERS and module_value.srcs and args and node.args and (
                args[0].kind == "tensor" and args[0].srcs and not args[0].saved_by and not args[0].leaf
                and isinstance(node.args[0], (ast.Name, ast.Attribute))):
            # `h = self.conv(x)` keeps `x` for the weight's gradient: a later in-place change of `x` breaks backward
            self.interp.mark_saved(dotted(node.args[0]), _text(node.func) or layer, frame)
        hooks = []
        for extra in module_value.extra:
            if isinstance(extra, tuple) and extra[:1] == ("hooks",):
                hooks += [h for h in (self.hook_value(expr, owner, frame, node) for expr, owner in extra[1]) if h]
            elif isinstance(extra, tuple) and extra[:1] == ("hooked",):
                hooks += extra[1]
        for hook in hooks:
            inputs = Value("container", items=tuple(args))
            replaced = flat(self.interp.call_value(hook, node, frame, [module_value, inputs, result], {}))
            if replaced.kind not in ("none", "unknown", "other") or replaced.srcs or replaced.cuts:
                result = replaced
        return result

    @cached_property
    def hooks_in_file(self) -> bool:
        return "register_forward_hook" in self.interp.root.source.text

    def hook_value(self, expr: ast.expr, owner: Value, frame: Frame, node) -> Value | None:
        """The hook a class registers on one of its layers (`self.layer.register_forward_hook(self.save)`)."""
        info = owner.cls
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "self":
            found = info.find_method(expr.attr)
            return self.interp.method_value(owner, found, frame, node) if found else None
        if isinstance(expr, ast.Name) and expr.id in info.module.functions:
            return self.interp.function_value(info.module.functions[expr.id], info.module, None)
        return None

    def forward(self, module_value: Value, args, kwargs, node, frame: Frame) -> Value:
        made = next((e for e in module_value.extra if isinstance(e, tuple) and e[:1] == ("made_in",)), None)
        if made is not None and frame.func is not None and id(frame.func.node) == made[3]:  # applied where it was made
            self.interp.emit(LayerMadePerCall(made[1], frame.module, layer=_text(made[1]) or "layer",
                                              method=made[2]), frame)
        children = next((e[1] for e in module_value.extra if isinstance(e, tuple) and e[0] == "children"), None)
        if children is not None and args and not kwargs:
            x = args[0]
            for index, child in enumerate(children):  # nn.Sequential(UserBlock(), ...): each child's forward
                child = named(child, f"{module_value.name}.{index}") if child.pending and module_value.name else child
                if "inplace" in child.extra and not index and x.kind == "tensor" and x.saved_by and node.args:
                    # `nn.Sequential(nn.ReLU(inplace=True), ...)` changes the caller's tensor, which another layer saved
                    self.record_inplace(child.made_at or node, frame, x, node.args[0],
                                        f"{_layer_text(child).strip('`')}(inplace=True)", None)
                    child = replace(child, extra=tuple(e for e in child.extra if e != "inplace"))
                if "inplace" in child.extra and index and x.kind == "tensor":  # writes over the layer before's output
                    before = _layer_text(children[index - 1])
                    self.record_inplace(child.made_at or node, frame, x, None, f"{_layer_text(child).strip('`')}(inplace=True)",
                                        None, var=f"the output of {before}")
                    child = replace(child, extra=tuple(e for e in child.extra if e != "inplace"))
                x = self.call_module(child, [x], {}, node, frame)
            return x
        info = module_value.cls if isinstance(module_value.cls, ClassInfo) else None
        if info is not None:
            found = info.find_method("__call__") or info.find_method("forward")  # `__call__` runs `forward`
            if found:
                method, owner = found
                func = self.interp.method_value(module_value, found, frame, node)
                result = self.interp.call_value(func, node, frame, args, kwargs)
                builtin = info.builtin_base()
                if builtin and not owner.methods.get("forward"):
                    return combine("tensor", result, Value(srcs=module_value.srcs), fw="torch")
                return result
            if info.builtin_base():
                return combine("tensor", module_value, *args, fw="torch")
        layer = module_value.cls if isinstance(module_value.cls, str) else ""
        short = layer.split(".")[-1]
        if "inplace" in module_value.extra and args and args[0].kind == "tensor" and node.args:
            self.record_inplace(node, frame, args[0], node.args[0], f"{short}(inplace=True)", None)
        merged = combine("tensor", *args, *kwargs.values(), fw="torch")
        srcs = merged.srcs | module_value.srcs
        saved = f"nn.{short}" if layer in api.SAVES_OUTPUT_MODULES else None
        if short in RECURRENT:
            return Value("tensor", srcs=srcs, cuts=merged.cuts, opaque=merged.opaque, fw="torch",
                         deps=merged.deps | module_value.deps, captured=merged.captured)
        return Value("tensor", srcs=srcs, cuts=dedup_cuts(merged.cuts, module_value.cuts), opaque=merged.opaque,
                     saved_by=saved, fw="torch", deps=merged.deps | module_value.deps, captured=merged.captured)

    def builtin(self, name: str, node: ast.Call, frame: Frame, args, kwargs):
        first = args[0] if args else Value()
        if name in ("float", "int", "bool", "complex"):
            if first.srcs:
                return cut(first, node, "item", f"{name}()", var=node.args[0], result_kind="number",
                           module=frame.module, dtype="float" if name in ("float", "complex") else "int")
            return None
        if name in ("list", "tuple", "sorted", "reversed", "set", "iter") and first.kind in ("params", "named_params"):
            return Value("container", srcs=first.srcs, items=(self.element(first),), opaque=first.opaque,
                         deps=first.deps)
        if name == "round" and first.kind == "tensor" and first.srcs:
            return cut(first, node, "zero", "round()", var=node.args[0], zero=True, module=frame.module)
        flag = next((n for n in ast.walk(node.args[0]) if isinstance(n, ast.Attribute) and n.attr == "requires_grad"),
                    None) if name == "filter" and len(args) == 2 and isinstance(node.args[0], ast.Lambda) else None
        if flag is not None and args[1].kind == "params":
            # `filter(lambda p: p.requires_grad, model.parameters())`: what an optimizer built over it (here or in
            # a helper it is handed to) holds depends on what is frozen now
            return replace(args[1], extra=args[1].extra + (("requires_grad_filter", flag, frame.module.path),))
        if name == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and first.kind == "module":
            return self.module_attribute(first, str(node.args[1].value), node, frame)
        return None

    def external_call(self, qn: str, node: ast.Call, frame: Frame):
        root = qn.split(".")[0]
        if root == "torch":
            return self.torch_call(qn, node, frame)
        if qn == "copy.deepcopy" and node.args:
            args, _ = self.interp.eval_args(node, frame)
            first = args[0]
            if first.kind == "module":
                # a new model (an EMA or target copy): its own parameters, not the original's
                label = f"<copy@{node.lineno}>"
                return replace(first, srcs=frozenset({label}), name=label, pending=True, cuts=())
            return first
        if root == "math":
            args, kwargs = self.interp.eval_args(node, frame)
            first = args[0] if args else Value()
            short = qn.split(".")[-1]
            if first.srcs and short not in ("pi", "e", "inf", "nan"):
                return cut(first, node, "math", f"math.{short}()", var=node.args[0] if node.args else None,
                           result_kind="number", module=frame.module, dtype="float")
            every = join(*args, *kwargs.values()) if (args or kwargs) else Value()
            return Value("number", cuts=every.cuts, deps=every.deps)
        if root in ("numpy", "scipy"):
            args, kwargs = self.interp.eval_args(node, frame)
            short = qn.split(".")[-1]
            graph = [a for a in args if a.srcs and a.fw in ("torch", None)]
            if graph:
                merged = join(*graph)
                return cut(merged, node, "numpy", f"np.{short}()", var=node.args[0] if node.args else None,
                           result_kind="array", module=frame.module)
            every = join(*args, *kwargs.values()) if (args or kwargs) else Value()
            if any(a.fw not in ("torch", None) for a in args):
                return None
            return Value("array", cuts=every.cuts, deps=every.deps,
                         dtype="int" if short in ("argmax", "argmin", "argsort") else None)
        return None

    def torch_call(self, qn: str, node: ast.Call, frame: Frame) -> Value:
        interp = self.interp
        if qn in api.GRAD_OFF_CONTEXTS:
            interp.eval_args(node, frame)
            return Value("grad_ctx", extra=(qn, "off"))
        if qn in api.GRAD_ON_CONTEXTS:
            return Value("grad_ctx", extra=(qn, "on"))
        if qn in api.SET_GRAD_ENABLED:
            arg = node.args[0] if node.args else None
            interp.eval_args(node, frame)
            mode = "off" if isinstance(arg, ast.Constant) and arg.value is False else (
                "on" if isinstance(arg, ast.Constant) and arg.value is True else "unknown")
            return Value("grad_ctx", extra=(qn, mode))
        args, kwargs = interp.eval_args(node, frame)
        short = qn.split(".")[-1]
        module = frame.module
        first = args[0] if args else Value()
        if qn in api.MODULE_WRAPPERS and first.kind in ("module", "function", "method"):
            return first  # the same parameters, the same forward
        every = combine("unknown", *args, *kwargs.values()) if (args or kwargs) else Value()
        if qn in api.LOCATION_SCALE_DISTRIBUTIONS and (args or "loc" in kwargs):
            return replace(every, extra=(("distribution", node, args[0] if args else kwargs["loc"]),))
        if qn in api.FUNCTIONAL_CALLS and len(args) >= 2 and first.kind == "module":
            # `functional_call(model, fast_weights, (x,))`: the output comes from the dict's tensors, not from the
            # parameters it stands in for (made from them, or not)
            given = args[1]
            made_from = given.srcs.union(*(c.lost for c in given.cuts))
            inputs = combine("tensor", given, *args[2:], *kwargs.values(), fw="torch")
            if any(overlaps(a, b) for a in made_from for b in first.srcs):
                return inputs  # the module's own parameters, replaced (detached copies, fast weights)
            return replace(inputs, srcs=inputs.srcs | first.srcs)  # maybe only some of them
        if qn in api.AUTOGRAD_GRAD:
            outputs = args[0] if args else kwargs.get("outputs", Value())
            label = _text(node.args[0]) if node.args else "outputs"
            interp.emit(Sink(node, module, value=outputs, kind="autograd.grad", label=label or "outputs"), frame)
            inputs = args[1] if len(args) > 1 else kwargs.get("inputs", Value())
            flag = next((k.value for k in node.keywords if k.arg == "create_graph"),
                        node.args[4] if len(node.args) > 4 else None)
            grad = Value("tensor", fw="torch")
            if flag is not None and not (isinstance(flag, ast.Constant) and not flag.value):
                # create_graph: the gradients are differentiable functions of what `outputs` came from
                grad = Value("tensor", srcs=outputs.srcs, cuts=outputs.cuts, opaque=not isinstance(flag, ast.Constant),
                             fw="torch", deps=outputs.deps)
            return Value("container", srcs=grad.srcs, cuts=grad.cuts, opaque=grad.opaque,
                         items=(grad,) * len(inputs.items or ()) or None, deps=grad.deps)
        if qn.startswith(api.OPTIMIZER_PREFIXES) and short[:1].isupper() and "lr_scheduler" not in qn:
            return self.make_optimizer(node, frame, args, kwargs)
        if qn in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
            label = f"<Parameter@{node.lineno}>"
            if frozen_parameter(node):
                return Value("tensor", cuts=first.cuts, fw="torch")
            cuts = first.cuts
            if first.srcs and frame.func is not None and frame.func.name == "forward":
                # a new Parameter built from trained values on every forward: a fresh leaf, cut from them
                cuts = cut(first, node, "rewrap", "nn.Parameter(...)", var=node.args[0] if node.args else None,
                           result_kind="tensor", module=module).cuts
            return Value("tensor", srcs=frozenset({label}), cuts=cuts, leaf=True, pending=True, name=label, fw="torch")
        if api.nn_tensor_class(qn) == "buffer":  # a registered buffer: a detached tensor that gets no gradient
            return Value("tensor", cuts=first.cuts, fw="torch")
        if api.is_layer_class(qn):
            if short in api.PARAMETERLESS_LAYERS:
                return Value("module", cls=qn, extra=("inplace",) if _inplace_layer(node) else (), made_at=node)
            label = f"<{short}@{node.lineno}>"
            extra = self.made_in_method(node, frame)
            if short == "Sequential" and args and all(a.kind == "module" for a in args) \
                    and _followed_in_order(args, True):
                extra += (("children", tuple(args)),)  # followed in order when called
            return Value("module", cls=qn, srcs=frozenset({label}), name=label, pending=True, extra=extra)
        if qn.startswith("torch.nn.init."):
            return first
        if qn.startswith("torch.utils.checkpoint.") and args:
            callee = args[0]
            if callee.kind in ("function", "method", "module"):
                fake = ast.Call(func=node.args[0], args=node.args[1:], keywords=[])
                ast.copy_location(fake, node)
                result = interp.call_value(callee, fake, frame, args[1:], {})
            else:
                result = combine("tensor", *args, fw="torch")
            # reentrant unless told otherwise; `use_reentrant=flag` with a flag of unknown value claims nothing
            given = kwargs.get("use_reentrant")
            reentrant = given is None or known_truth(given) is True
            if reentrant and not any(a.srcs for a in args[1:]) and result.srcs:
                # reentrant checkpointing records nothing when no input requires grad
                return cut(result, node, "checkpoint", "checkpoint(...)", var=node.args[0], module=module)
            return result
        return self.torch_function(qn, short, node, frame, args, kwargs, first, every)

    def torch_function(self, qn, short, node, frame: Frame, args, kwargs, first, every) -> Value:
        module = frame.module
        if qn.count(".") > 1 and not qn.startswith(api.TENSOR_NAMESPACES) and qn not in api.VARIABLE:
            # torch.utils, torch.distributed, torch.hub, torch.jit...: not tensor operations
            return Value("unknown", srcs=every.srcs, cuts=every.cuts, opaque=True, deps=every.deps)
        if short[:1].isupper() and short not in api.FACTORIES:
            # a torch class (GradScaler, Categorical, ...): an object, differentiable through its inputs
            return Value("unknown", srcs=every.srcs, cuts=every.cuts, opaque=True, deps=every.deps)
        requires_grad = any(k.arg == "requires_grad" and isinstance(k.value, ast.Constant) and k.value.value is True
                            for k in node.keywords)
        dtype_qn = _dtype_name(node, module.names)
        if short in api.SAMPLING_OPS and qn.count(".") == 1 and every.srcs:  # drawn from trainable parameters
            return cut(every, node, "zero", f"torch.{short}()", var=node.args[0] if node.args else None,
                       zero=True, module=module, fw="torch")
        if short in api.FACTORIES and (qn.count(".") == 1 or qn.startswith("torch.cuda.") or qn in api.VARIABLE):
            if short in api.REWRAP_FACTORIES and first.srcs:
                result = cut(first, node, "rewrap", f"torch.{short}()", var=node.args[0], result_kind="tensor",
                             module=module, fw="torch")
            elif short in ("as_tensor", "asarray"):
                if first.kind in ("tensor", "unknown") and first.srcs:
                    return replace(first, kind="tensor", fw="torch")
                return Value("tensor", cuts=first.cuts, fw="torch", deps=first.deps)
            else:
                result = Value("tensor", cuts=every.cuts, fw="torch", deps=every.deps)
            intlike = short in api.INT_FACTORIES or (dtype_qn in api.INT_DTYPES) or (
                short in ("tensor", "arange", "full") and dtype_qn is None and _int_literal_data(node))
            dtype = "int" if intlike else ("float" if dtype_qn in api.FLOAT_DTYPES else None)
            if requires_grad:
                label = f"<tensor@{node.lineno}>"
                return Value("tensor", srcs=frozenset({label}), cuts=result.cuts, leaf=True, pending=True,
                             name=label, dtype=dtype, extra=("releaf",) if result.cuts else (), fw="torch")
            return replace(result, dtype=dtype)
        if short in api.INDEX_OPS:
            if first.srcs:
                return cut(first, node, "index", f"torch.{short}()", var=node.args[0] if node.args else None,
                           result_kind="tensor", module=module, dtype="int", fw="torch")
            return Value("tensor", cuts=every.cuts, dtype="int", fw="torch", deps=every.deps)
        if short in api.ZERO_GRAD_OPS:
            if first.srcs:
                return cut(first, node, "zero", f"torch.{short}()", var=node.args[0] if node.args else None,
                           zero=True, module=module, fw="torch")
            return Value("tensor", cuts=every.cuts, fw="torch", deps=every.deps)
        if short in api.COMPARE_METHODS:
            if every.srcs:
                return cut(every, node, "compare", f"torch.{short}()", var=node.args[0] if node.args else None,
                           result_kind="tensor", module=module, dtype="bool", fw="torch")
            return Value("tensor", cuts=every.cuts, dtype="bool", fw="torch", deps=every.deps)
        if short == "one_hot":
            if first.srcs:
                return cut(first, node, "index", "F.one_hot()", var=node.args[0], result_kind="tensor",
                           module=module, dtype="int", fw="torch")
            return Value("tensor", cuts=first.cuts, dtype="int", fw="torch", deps=first.deps)
        if short in api.VALUES_INDICES_OPS and qn.count(".") == 1:
            has_dim = (len(node.args) >= 2 and not (len(args) > 1 and args[1].kind == "tensor")) or "dim" in kwargs \
                or short in ("topk", "sort", "kthvalue", "mode", "cummax", "cummin")
            if has_dim:
                return Value("tensor", srcs=first.srcs, cuts=first.cuts, opaque=first.opaque, fw="torch",
                             deps=first.deps, extra=("values_indices", ("vi", (node, module, f"torch.{short}()"))))
            return combine("tensor", *args, fw="torch")
        if short == "where" and len(args) == 3:
            # no gradient flows into the condition: what cut it (a comparison) travels with the result
            result = combine("tensor", args[1], args[2], fw="torch")
            extra_cuts = tuple(c for c in args[0].cuts if c not in result.cuts)
            return replace(result, cuts=result.cuts + extra_cuts) if extra_cuts else result
        if short in MULTI_VIEW and first.srcs and qn.count(".") == 1:
            return replace(combine("tensor", *args, fw="torch"), saved_by=f"multiview:torch.{short}()")
        if short in ("stack", "cat", "concat", "concatenate", "hstack", "vstack", "dstack") \
                and first.items is not None and first.keys is None:
            # `torch.stack([fit, reg]).sum()`: a sum of the stacked losses, each a term of it
            terms = merge_terms(*(i.terms for i in first.items), *(dead_term(i, node) for i in first.items))
            return replace(combine("tensor", *args, fw="torch"), terms=terms)
        if short in ("stack", "cat", "concat", "concatenate", "hstack", "vstack", "dstack", "block_diag",
                     "einsum", "broadcast_tensors", "cartesian_prod", "meshgrid"):
            return combine("tensor", *args, fw="torch")
        if short in TERM_KEEPING and qn.count(".") == 1 and first.terms:  # `torch.sum(torch.stack(losses))`
            return replace(combine("tensor", *args, *kwargs.values(), fw="torch"), terms=first.terms)
        if short == "from_numpy":
            return Value("tensor", cuts=first.cuts, dtype=first.dtype, fw="torch", deps=first.deps)
        saved = short if short in api.SAVES_OUTPUT else None
        if qn.startswith("torch.nn.functional."):  # `F.dropout(h, inplace=True)` writes over `h`
            inplace = any(k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value
                          for k in node.keywords)
            if inplace and first.kind == "tensor" and node.args:
                self.record_inplace(node, frame, first, node.args[0], f"F.{short}(..., inplace=True)", None)
            if short in ("relu", "softmax", "log_softmax", "sigmoid", "tanh"):
                saved = short
        if dtype_qn is not None and dtype_qn in api.INT_DTYPES and every.srcs:
            return cut(every, node, "intcast", f"dtype={dtype_qn}", result_kind="tensor", module=module, dtype="int",
                       fw="torch")
        return combine("tensor", *args, *kwargs.values(), saved_by=saved, fw="torch")

    # ================================================================== methods
    def method(self, receiver: Value, method: str, node: ast.Call, frame: Frame, args, kwargs):
        module = frame.module
        if receiver.kind == "module":
            return self.module_method(receiver, method, node, frame, args, kwargs)
        if receiver.kind == "super":
            if method == "forward" and frame.self_value is not None:
                return combine("tensor", *args, Value(srcs=frame.self_value.srcs), fw="torch")
            return NONE
        if receiver.kind in ("method", "function"):
            return Value("unknown", srcs=join(*args).srcs if args else EMPTY, opaque=True)
        if receiver.kind == "class" and method == "apply" and isinstance(receiver.cls, ClassInfo) \
                and receiver.cls.returns_input_as_is and args:
            # its output is a view of the input it returned: autograd forbids changing it in place
            return replace(combine("tensor", *args, fw="torch"), saved_by=f"functionview:{receiver.cls.name}")
        if receiver.kind == "optimizer":
            if method == "step":
                self.interp.emit(Step(node, module, optimizer=receiver), frame)
            elif method == "zero_grad":
                self.interp.emit(GradsCleared(node, module, target=receiver, to_none=to_none(node)), frame)
            elif method == "add_param_group" and args:
                group = args[0]
                opt = receiver.ref
                if isinstance(opt, Optimizer):
                    opt.coverage = replace(opt.coverage, srcs=opt.coverage.srcs | group.srcs)
                if isinstance(node.func, ast.Attribute):
                    self.interp.store(node.func.value, replace(receiver, srcs=receiver.srcs | group.srcs), frame)
            return NONE
        distribution = next((e for e in receiver.extra if isinstance(e, tuple) and e[:1] == ("distribution",)), None)
        if distribution is not None and method == "rsample":
            return replace(combine("tensor", receiver, *args, fw="torch"), extra=(("rsample_of", distribution[1]),))
        if distribution is not None and method == "log_prob" and args and ("rsample_of", distribution[1]) in args[0].extra:
            return self.log_prob_of_own_draw(receiver, distribution[2], args[0], node, module)
        if method in api.UNGRADED_DRAWS and receiver.kind in ("unknown", "external") and receiver.srcs:
            # a distribution's draw has no graph (rsample() is the differentiable one): what made the distribution
            # reaches the loss through it only by `log_prob` (REINFORCE), or not at all
            return cut(receiver, node, "index", f".{method}()", var=node.func.value, result_kind="tensor",
                       module=module, fw="torch")
        if method == "backward" and (receiver.kind == "tensor" or receiver.cuts or receiver.srcs):
            # `np.sum(losses).backward()`: the NumPy value cannot be differentiated, and what cut it is why;
            # an unknown value that never met anything trainable may be an extension's own `backward`
            label = _text(node.func.value) if isinstance(node.func, ast.Attribute) else "loss"
            self.interp.emit(Sink(node, module, value=receiver, kind="backward", label=label or "loss"), frame)
            return NONE
        if receiver.kind in ("tensor", "unknown", "array", "number") or receiver.srcs or receiver.cuts:
            if receiver.kind in ("unknown", "container", "dict") and method in (
                    "append", "extend", "insert", "update", "setdefault", "add", "pop", "get", "items", "values", "keys",
                    "copy"):
                return None  # a Python container's own method: the core follows its items
            return self.tensor_method(receiver, method, node, frame, args, kwargs)
        if receiver.kind in ("params", "named_params"):
            if method in ("values", "items", "keys", "copy"):
                return receiver
            if method in ("pop", "get"):
                return self.element(receiver)
        return None

    @staticmethod
    def log_prob_of_own_draw(dist: Value, loc: Value, draw: Value, node: ast.Call, module) -> Value:
        """`d.log_prob(d.rsample())` of a location-scale distribution: the draw is loc + scale * eps, so the log
        density is a function of eps and the scale alone: what reaches it only through the loc gets a zero
        gradient (REINFORCE wants `d.sample()`, or the draw detached)."""
        others = dist.srcs - loc.srcs
        through_loc = frozenset(s for s in loc.srcs if s not in others)
        rest = combine("tensor", replace(dist, srcs=others, extra=()), replace(draw, srcs=draw.srcs & others, extra=()),
                       fw="torch")
        if not through_loc:
            return rest
        zeroed = cut(Value("tensor", srcs=through_loc, fw="torch", deps=loc.deps), node, "own_draw",
                     "log_prob", zero=True, module=module)
        return combine("tensor", rest, zeroed, fw="torch")

    def module_method(self, receiver: Value, method: str, node, frame: Frame, args, kwargs) -> Value:
        if method == "zero_grad" and receiver.srcs:
            self.interp.emit(GradsCleared(node, frame.module, target=receiver, to_none=to_none(node)), frame)
        if method in ("parameters", "buffers"):
            return Value("params", srcs=receiver.srcs | _held(receiver) if method == "parameters" else EMPTY,
                         deps=receiver.deps)
        if method == "named_parameters":
            return Value("named_params", srcs=receiver.srcs | _held(receiver), deps=receiver.deps)
        if method in ("modules", "children", "named_modules", "named_children"):
            return Value("container", srcs=receiver.srcs, items=(Value("module", srcs=receiver.srcs),),
                         deps=receiver.deps)
        if method == "requires_grad_":
            flag = literal_flag(node.args[0] if node.args else next(
                (k.value for k in node.keywords if k.arg == "requires_grad"), None), frame)
            frozen = isinstance(flag, ast.Constant) and flag.value is False
            self.interp.emit(Freeze(node, frame.module, srcs=receiver.srcs, frozen=frozen,
                                    conditional=frame.conditional > 0), frame)
            return receiver
        if method in MODULE_PASSTHROUGH:
            return receiver
        if method in ("forward", "__call__"):
            return self.call_module(receiver, args, kwargs, node, frame)
        if method == "register_forward_hook" and args and args[0].kind in ("function", "method"):
            # `model.layer4.register_forward_hook(fn)`: on that layer of every instance of the model's class
            # (or `module.register_forward_hook(self.hook)` in a helper given `model.enc`)
            layer = node.func.value if isinstance(node.func, ast.Attribute) else None
            owner = self.interp.eval(layer.value, frame) if isinstance(layer, ast.Attribute) else None
            key = (id(owner.cls), layer.attr) if owner is not None and owner.kind == "module" and isinstance(
                owner.cls, ClassInfo) else next((e[1] for e in receiver.extra if isinstance(e, tuple) and e[:1] == (
                    "attribute_of",)), None)
            if key is not None:
                hooks = self.forward_hooks.setdefault(key, [])
                if all(h.func != args[0].func for h in hooks):
                    hooks.append(args[0])
            return Value("other")
        if method in ("state_dict", "load_state_dict", "register_buffer", "register_parameter", "add_module",
                      "register_forward_hook", "register_full_backward_hook", "named_buffers", "extra_repr"):
            return Value("other")
        if method in ("append", "extend", "insert"):
            return NONE
        merged = join(*args, *kwargs.values())
        return Value("tensor" if merged.kind == "tensor" else "unknown", srcs=merged.srcs | receiver.srcs,
                     cuts=merged.cuts, opaque=True, deps=merged.deps | receiver.deps)

    def tensor_method(self, receiver: Value, method: str, node: ast.Call, frame: Frame, args, kwargs) -> Value:
        module = frame.module
        if method in api.FRESH_TENSOR_METHODS:  # `weight.new_zeros(...)`: a new tensor with no history
            return Value("tensor", fw="torch", dtype=receiver.dtype)
        var = node.func.value if isinstance(node.func, ast.Attribute) else None  # spelled out only if a cut is made
        last = receiver.cuts[-1] if receiver.cuts else None
        if method in ("numpy", "tolist") and not receiver.srcs and last is not None and last.kind == "detach" \
                and var is not None and _contains(var, last.node):
            kind = "numpy" if method == "numpy" else "item"
            round_trip = Cut(node, kind, f"{last.op}{'.numpy()' if method == 'numpy' else '.tolist()'}", last.lost,
                             last.var, False, last.module)
            return Value("array" if method == "numpy" else "container", cuts=receiver.cuts[:-1] + (round_trip,),
                         opaque=receiver.opaque, deps=receiver.deps)
        if method in api.CUT_METHODS:
            kind, op, result_kind = api.CUT_METHODS[method]
            result = cut(replace(receiver, leaf=False), node, kind, op, var=var, result_kind=result_kind,
                         module=module, dtype="float" if method == "item" and not receiver.intlike else receiver.dtype)
            if method == "detach_" and var is not None:
                self.interp.store(var, result, frame, mutation=True)
            if method == "tolist" and receiver.kind == "tensor":
                result = replace(result, items=None)
            return result
        if method in api.INT_CAST_METHODS and receiver.kind in ("tensor", "unknown"):
            if receiver.srcs:
                return cut(receiver, node, "intcast", f".{method}()", var=var, result_kind="tensor", module=module,
                           dtype="int", fw="torch")
            return replace(receiver, dtype="int", leaf=False)
        if method in ("to", "type") and node.args:
            dtype_qn = module.names.qualname(node.args[0])
            if dtype_qn in api.INT_DTYPES and receiver.srcs:
                return cut(receiver, node, "intcast", f".{method}({dtype_qn})", var=var, result_kind="tensor",
                           module=module, dtype="int", fw="torch")
        if method == "to" and any(k.arg == "dtype" for k in node.keywords):
            dtype_qn = _dtype_name(node, module.names)
            if dtype_qn in api.INT_DTYPES and receiver.srcs:
                return cut(receiver, node, "intcast", f".to(dtype={dtype_qn})", var=var, result_kind="tensor",
                           module=module, dtype="int", fw="torch")
        if method in api.INDEX_OPS:
            if receiver.srcs:
                return cut(receiver, node, "index", f".{method}()", var=var, result_kind="tensor", module=module,
                           dtype="int", fw="torch")
            return Value("tensor", cuts=receiver.cuts, dtype="int", fw="torch", deps=receiver.deps)
        if method in api.ZERO_GRAD_OPS or method.rstrip("_") in api.ZERO_GRAD_OPS:
            if receiver.srcs:
                return cut(receiver, node, "zero", f".{method}()", var=var, zero=True, module=module)
            return replace(receiver, leaf=False)
        if method in api.COMPARE_METHODS:
            merged = join(receiver, *args)
            if merged.srcs:
                return cut(merged, node, "compare", f".{method}()", var=var, result_kind="tensor", module=module,
                           dtype="bool", fw="torch")
            return Value("tensor", cuts=merged.cuts, dtype="bool", fw="torch", deps=merged.deps)
        if method in api.VALUES_INDICES_OPS:
            has_dim = bool(node.args) or "dim" in kwargs or method in ("topk", "sort", "kthvalue", "mode")
            if has_dim and not (args and args[0].kind == "tensor"):
                return Value("tensor", srcs=receiver.srcs, cuts=receiver.cuts, opaque=receiver.opaque, fw="torch",
                             deps=receiver.deps, extra=("values_indices", ("vi", (node, module, f".{method}()"))))
            return combine("tensor", receiver, *args, fw="torch")
        if method == "requires_grad_":
            flag = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "requires_grad"),
                                                       None)
            if isinstance(flag, ast.Constant) and flag.value is False:
                if receiver.srcs:
                    self.interp.emit(Freeze(node, module, srcs=receiver.srcs, frozen=True,
                                            conditional=frame.conditional > 0), frame)
                return replace(receiver, srcs=EMPTY, leaf=False)
            if receiver.srcs:
                return receiver
            key = dotted(var) if isinstance(var, ast.Attribute) else None
            if key and "(" not in key:  # `self.W.requires_grad_()`: as `self.W.requires_grad = True`
                leaf = replace(receiver, kind="tensor", srcs=frozenset({key}), leaf=True, name=key, fw="torch")
                self.interp.store_path(key, leaf, frame, mutation=True)
                self.note_leaf(key, frame, node)
                self.define(key, "leaf", None, frame.module, frame)
                return leaf
            label = f"<tensor@{node.lineno}>"
            new_leaf = Value("tensor", srcs=frozenset({label}), cuts=receiver.cuts, leaf=True, pending=True,
                             name=label, extra=("releaf",), fw="torch")
            if isinstance(var, ast.Name):  # `loss.requires_grad_()` as a statement changes `loss`
                self.define(var.id, "releaf", None, frame.module, frame)
                self.interp.store(var, named(new_leaf, var.id), frame)
                self.note_leaf(var.id, frame, node)
            return new_leaf
        if method.endswith("_") and not method.startswith("_") and method not in api.NOT_REALLY_INPLACE:
            if receiver.kind == "tensor" and var is not None:
                self.record_inplace(node, frame, receiver, var, f".{method}()", None)
            merged = combine(receiver.kind, receiver, *args, dtype=receiver.dtype)
            if method in ("zero_", "fill_"):
                merged = cut(merged, node, "zero", f".{method}()", var=var, zero=True, module=module)
            new_value = replace(merged, leaf=receiver.leaf, name=receiver.name, saved_by=receiver.saved_by)
            if frame.state.get(GRAD) is not None:
                # an update under no_grad keeps the tensor's own history; a fresh buffer filled from cut
                # values (`torch.zeros(n, d).index_add_(0, idx, msg)`) carries their cuts along
                new_value = receiver
                if not receiver.srcs:
                    new_value = replace(receiver, cuts=dedup_cuts(receiver.cuts, merged.cuts))
            if var is not None:
                self.interp.store(var, new_value, frame, mutation=True)
            return new_value
        if method in ("clone", "contiguous") and receiver.kind == "tensor":
            return replace(receiver, leaf=False, name=None, pending=False, saved_by=None)
        if method in MULTI_VIEW and receiver.kind in ("tensor", "unknown") and receiver.srcs:
            # the pieces are views of one output: none of them may be modified in place while recording
            return replace(combine("tensor", receiver, *args, fw="torch"), saved_by=f"multiview:.{method}()")
        if method in VIEW_METHODS and (receiver.saved_by or "").startswith("multiview:") and receiver.srcs:
            return replace(combine("tensor", receiver, *args, fw="torch"), saved_by=receiver.saved_by)
        if method in TERM_KEEPING and receiver.terms:  # `(a + b).mean()`: still a sum of the same terms
            return replace(combine(receiver.kind if receiver.kind != "unknown" else "tensor", receiver, *args,
                                   fw="torch"), terms=receiver.terms)
        if method in ("size", "dim", "numel", "element_size", "nelement", "stride", "is_contiguous",
                      "data_ptr", "get_device", "is_floating_point"):
            return Value("number", dtype="int")
        if method in ("astype", "copy", "mean", "sum", "std", "max", "min", "reshape", "squeeze") \
                and receiver.kind == "array":
            return Value("array", cuts=receiver.cuts, deps=receiver.deps)
        saved = method if method in api.SAVES_OUTPUT else None
        kind = receiver.kind if receiver.kind in ("tensor", "array", "number") else "unknown"
        if kind == "unknown" and receiver.srcs:
            kind = "tensor" if method in TENSOR_METHODS_HINT else "unknown"
        dtype = receiver.dtype if receiver.intlike and method not in ("float", "double", "half", "softmax",
                                                                      "mean") else None
        if method in ("float", "double", "half", "bfloat16"):
            dtype = "float"
        return combine(kind, receiver, *args, *kwargs.values(), saved_by=saved, dtype=dtype,
                       fw="torch" if kind == "tensor" else None)

    def name_placeholders(self) -> None:
        """After the run: what a layer did before it was bound to a name (an optimizer its `__init__`
        built over `self.parameters()`) is renamed to that name."""
        if not self.aliases or self.named:
            return
        self.named = True
        renaming = Renaming({k: frozenset(v) for k, v in self.aliases.items()})
        old = list(self.interp.events)  # kept alive while copies are made: ids stay unique
        events = []
        for event in old:
            if type(event).__module__ != Sink.__module__:  # another framework's events are its own
                events.append(event)
                continue
            renamed = renaming.event(event)
            renamed.seq = event.seq
            events.append(renamed)
        self.interp.events[:] = events
        self._by_kind.clear()
        for event in events:  # references between events follow their copies
            for f in ("optimizer", "last_sink", "sink"):
                old = getattr(event, f, None)
                if old is not None and id(old) in renaming.renamed:
                    setattr(event, f, renaming.renamed[id(old)])

    # ================================================================== what nothing called
    def after_module(self) -> None:
        interp = self.interp
        module = interp.root
        for name, node in module.functions.items():
            if name not in module.called_names and id(node) not in interp.analysed:
                func = self.undecorated(node, module, None)
                args = self.standalone_args(func, None)
                state = {GRAD: self.helper_grad_off(func, None, module)}
                interp.run_standalone(func, args, None, state)
        for info in module.classes.values():
            self.analyse_class(info)

    def undecorated(self, node: ast.AST, module, cls) -> FunctionRef:
        """The function as its decorators leave it, or as written when they make something that is not one
        (a `functools.partial` of a transform, a custom wrapper object): its body is analysed either way."""
        return self.interp.function_value(node, module, cls).func or FunctionRef(node, module, cls)

    def standalone_args(self, func: FunctionRef, self_value: Value | None) -> dict:
        a = func.node.args
        env: dict = {}
        for index, p in enumerate(a.posonlyargs + a.args + a.kwonlyargs):
            if index == 0 and self_value is not None:
                env[p.arg] = self_value
            else:
                env[p.arg] = param_value(p)
                if env[p.arg].srcs:
                    self.define(p.arg, "param", None, self.interp.root, Frame(self.interp.root, {}))
        if a.vararg:
            env[a.vararg.arg] = UNKNOWN
        if a.kwarg:
            env[a.kwarg.arg] = UNKNOWN
        return env

    def analyse_class(self, info: ClassInfo) -> None:
        interp = self.interp
        self_value = Value(kind="module", cls=info, name="self", srcs=frozenset({"self"}))
        if info.is_module:
            self_value = Value(kind="module", cls=info, name="self")
            found = info.find_method("forward")
            if found and found[1] is info and id(found[0]) not in interp.analysed:
                func = self.undecorated(found[0], info.module, info)
                frame = interp.run_standalone(func, self.standalone_args(func, self_value), self_value,
                                              {GRAD: self.helper_grad_off(func, None, info.module)})
                out = interp.result_of(frame)
                if out.cuts:
                    interp.emit(Sink(found[0], info.module, value=out, kind="output",
                                     label=f"{info.name}.forward()", owner=info), frame)
            for name, method in info.methods.items():
                if name in ("forward", "__init__") or name.startswith("__") or id(method) in interp.analysed:
                    continue
                if id(method) in self.methods_with_sinks:
                    func = self.undecorated(method, info.module, info)
                    interp.run_standalone(func, self.standalone_args(func, self_value), self_value)
            init = info.methods.get("__init__")
            if init is not None and id(init) not in interp.analysed and writes_into_weights(init):
                # a constructor that writes into a tensor in place (`E[:, 0::2] = ...` on a layer's weight, here or
                # in a helper it hands the weight to): outside no_grad, that raises as the model is built
                func = self.undecorated(init, info.module, info)
                interp.run_standalone(func, self.standalone_args(func, self_value), self_value)
        else:
            obj = Value("object", cls=info, name="self")
            attrs = {}
            init = info.methods.get("__init__")
            if init is not None and any(id(m) in self.methods_with_sinks for m in info.methods.values()):
                func = self.undecorated(init, info.module, info)
                frame = interp.run_standalone(func, self.standalone_args(func, obj), obj)
                attrs = {k[5:]: v for k, v in frame.env.items() if k.startswith("self.") and k.count(".") == 1}
            obj = replace(obj, extra=("object", tuple(sorted(attrs.items(), key=lambda kv: kv[0]))))
            for name, method in info.methods.items():
                if name == "__init__" or id(method) not in self.methods_with_sinks or id(method) in interp.analysed:
                    continue
                func = self.undecorated(method, info.module, info)
                interp.run_standalone(func, self.standalone_args(func, obj), obj)

    @cached_property
    def methods_with_sinks(self) -> set:
        """Methods of the file's classes that call `backward`, `grad` or `step` (from the node index)."""
        module = self.interp.root
        spans = []
        for info in module.classes.values():
            for method in info.methods.values():
                spans.append((method.lineno, method.end_lineno or method.lineno, id(method)))
        spans.sort()
        starts = [s[0] for s in spans]
        found: set = set()
        for node in module.source.nodes(ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr in ("backward", "grad", "step"):
                i = bisect.bisect_right(starts, node.lineno) - 1
                while i >= 0:
                    start, end, key = spans[i]
                    if start <= node.lineno <= end:
                        found.add(key)
                    i -= 1
                    if i >= 0 and spans[i][1] < node.lineno and spans[i][0] < start:
                        break
        return found


# conversions that return the Parameter itself when nothing changes (`.to(device)` on the same device)
MAYBE_SAME = {"to", "cpu", "float", "type", "contiguous", "requires_grad_"}


def _class_and_bases(cls: ClassInfo) -> list:
    """The class and its project base classes, each once."""
    out, seen, todo = [], set(), [cls]
    while todo:
        info = todo.pop()
        if id(info) in seen:
            continue
        seen.add(id(info))
        out.append(info)
        todo.extend(p for p in (info.module.resolve_class(b) for b in info.bases) if p is not None)
    return out


def injected_attributes(cls: ClassInfo) -> frozenset:
    """Attributes a module's `__init__` sets from what it is given (`self.net = net`), through its bases."""
    found = getattr(cls, "_injected", None)
    if found is None:
        found = cls._injected = frozenset(
            attr.name for info in _class_and_bases(cls) for attr in info.attrs.values()
            if attr.kind == "other" and attr.method == "__init__" and isinstance(attr.value, ast.Name))
    return found


def _assigns_parameter(stmt, module) -> bool:
    """`self.weight = nn.Parameter(t, requires_grad=False)`: a parameter (frozen or not) replaces a parameter."""
    value = getattr(stmt, "value", None)
    return isinstance(value, ast.Call) and api.nn_tensor_class(module.names.qualname(value.func) or "") == "param"


def _registered_later(fact, frame: Frame) -> bool:
    """The parameter is registered by a method other than `__init__` (`set_input_size`) while this assignment runs
    in `__init__`: when it runs, the attribute is no parameter yet."""
    current = frame.func.name if frame.func is not None else None
    return current == "__init__" and fact.method != "__init__"


def frozen_parameter(call) -> bool:
    """`nn.Parameter(t, requires_grad=False)` (or `False` as its second argument): held, never trained."""
    if not isinstance(call, ast.Call):
        return False
    flag = call.args[1] if len(call.args) > 1 else next(
        (k.value for k in call.keywords if k.arg == "requires_grad"), None)
    return isinstance(flag, ast.Constant) and flag.value is False


def registered_parameter(fact) -> bool:
    """An attribute `__init__` sets to an `nn.Parameter` (or one converted by a call that keeps it)."""
    if fact.kind == "param":
        return True
    value = fact.value
    return fact.kind == "param_converted" and isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) \
        and value.func.attr in MAYBE_SAME


def _reads_attribute(stmt: ast.AST, name: str, attr: str) -> bool:
    value = getattr(stmt, "value", None)
    if value is None:
        return False
    for node in ast.walk(value):
        if isinstance(node, ast.Attribute) and node.attr == attr and dotted(node.value) == name:
            return True
    return False


FLAGS = "literal_flags"  # frame state: parameter -> the literal bool this call gave it


def flag_parameters(fn: ast.AST) -> frozenset:
    """The parameters of `fn` that a `requires_grad` assignment or `requires_grad_()` call uses as its flag."""
    if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return EMPTY
    params = {p.arg for p in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}
    found = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and any(
                isinstance(t, ast.Attribute) and t.attr == "requires_grad" for t in node.targets):
            found.add(node.value.id)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "requires_grad_":
            found.update(a.id for a in node.args[:1] if isinstance(a, ast.Name))
    return frozenset(found & params)


def literal_flag(flag: ast.AST | None, frame: Frame) -> ast.AST | None:
    """The literal a flag stands for: itself, or the literal this call gave the parameter it names."""
    if isinstance(flag, ast.Name):
        given = frame.state.get(FLAGS, {}).get(flag.id)
        if given is not None:
            return ast.Constant(value=given)
    return flag


def forward_hooks_set(info: ClassInfo) -> dict:
    """attribute -> the hooks the class's own methods register on `self.<attribute>` (`register_forward_hook`)."""
    hooks: dict = {}
    if "register_forward_hook" not in info.module.source.text:
        return hooks
    for method in info.methods.values():
        for node in ast.walk(method):
            func = node.func if isinstance(node, ast.Call) else None
            if isinstance(func, ast.Attribute) and func.attr == "register_forward_hook" and node.args and isinstance(
                    func.value, ast.Attribute) and isinstance(func.value.value, ast.Name) and func.value.value.id == "self":
                hooks.setdefault(func.value.attr, []).append(node.args[0])
    return hooks


def _layer_text(layer: Value) -> str:
    """`nn.ReLU` for a layer of PyTorch's, the class name for one of the project's."""
    if isinstance(layer.cls, ClassInfo):
        return f"`{layer.cls.name}`"
    return f"`nn.{layer.cls.split('.')[-1]}`" if isinstance(layer.cls, str) else "the layer before"


def _followed_in_order(layers, sequential: bool) -> bool:
    """Are a container's layers told apart: the project's own layers inside (their forward is followed), or an
    in-place layer in an `nn.Sequential` (it writes over what the layer before it returned)? Otherwise the
    container is one layer."""
    return any(isinstance(layer.cls, ClassInfo) for layer in layers) or (
        sequential and any("inplace" in layer.extra for layer in layers))


def _literal_index(node: ast.AST) -> int:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, int) else 0


def _inplace_layer(call: ast.AST) -> bool:
    """`nn.ReLU(inplace=True)` and friends (also through `.to(...)` chains)."""
    return isinstance(call, ast.Call) and any(
        k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords)


def _contains(tree: ast.AST, node: ast.AST) -> bool:
    """Is `node` inside `tree` (both of the same file): its position lies within the tree's span."""
    if tree is node:
        return True
    start = (getattr(tree, "lineno", 0), getattr(tree, "col_offset", 0))
    end = (getattr(tree, "end_lineno", 0) or 0, getattr(tree, "end_col_offset", 0) or 0)
    here = (getattr(node, "lineno", -1), getattr(node, "col_offset", -1))
    return start <= here < end


def _is_zero(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and not isinstance(node.value, bool) and node.value == 0


def _before(a: ast.AST, b: ast.AST) -> bool:
    return (getattr(a, "lineno", 0), getattr(a, "col_offset", 0)) < (getattr(b, "lineno", 0), getattr(b, "col_offset", 0))


def dtype_name(node: ast.Call, names) -> str | None:
    for k in node.keywords:
        if k.arg == "dtype":
            return names.qualname(k.value)
    return None


_dtype_name = dtype_name


def int_literal_data(node: ast.Call) -> bool:
    """`torch.tensor([1, 2])`, `torch.tensor([0] * n)`: data made only of int literals."""
    if not node.args:
        return False
    data = node.args[0]
    if any(isinstance(sub, ast.Constant) and isinstance(sub.value, bool) for sub in ast.walk(data)):
        return False  # a bool tensor: told apart from an integer one in messages
    return literal_dtype(data) == "int"


_int_literal_data = int_literal_data


NUMBER_VALUE = NUMBER


def _non_leaf(given: Value, depth: int = 0) -> Value | None:
    """A tensor computed from trainable sources among what an optimizer was given, item by item (lists,
    tuples, param-group dicts): torch.optim refuses it with "can't optimize a non-leaf Tensor"."""
    if given.kind == "tensor":
        return given if given.srcs and not given.leaf and not given.opaque and given.fw == "torch" else None
    if depth > 3 or given.items is None:
        return None
    if given.keys is not None:  # a param group: only its "params" entry holds tensors to optimize
        items = [item for key, item in zip(given.keys, given.items) if key == "params"]
    else:
        items = list(given.items)
    return next((found for item in items if (found := _non_leaf(item, depth + 1)) is not None), None)


def _defaults(fn: ast.FunctionDef) -> dict:
    """Parameter name -> its default expression."""
    a = fn.args
    positional = a.posonlyargs + a.args
    found = {p.arg: d for p, d in zip(positional[len(positional) - len(a.defaults):], a.defaults)}
    found.update({p.arg: d for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None})
    return found


def _held(module: Value) -> frozenset:
    """The sources of the layers and parameters a module's constructor was given and kept (`self.backbone =
    backbone`): its `parameters()` include theirs, whatever name the caller knows them by."""
    out: set = set()
    for e in module.extra:
        if isinstance(e, tuple) and e[:1] == ("given",):
            for _, v in e[1]:
                if v.kind == "module" or (v.kind == "tensor" and v.leaf):
                    out |= v.srcs
    return frozenset(out)


def _short_text(node: ast.AST | None) -> str | None:
    """An unnamed expression as written (`torch.relu(h)`), when it is short enough for a message."""
    if node is None:
        return None
    text = ast.unparse(node)
    return text if len(text) <= 30 else None


def _iterators(given: Value, depth: int = 0) -> list:
    """The one-shot iterators an optimizer is given: itself, or the `params` of its param groups."""
    if given.oneshot is not None:
        return [given]
    if given.items is None or depth > 2:
        return []
    if given.keys is not None:
        return _iterators(given.items[given.keys.index("params")], depth + 1) if "params" in given.keys else []
    return [found for item in given.items for found in _iterators(item, depth + 1)]


def flag_attributes(cls: ClassInfo) -> frozenset:
    """Attributes a module's methods (not its constructor) test as flags: compared with a literal (`if
    self.activation == "relu":`) or tested bare (`if self.use_norm:`), through its bases. Only those of a layer's
    literal arguments are worth its constructor's run."""
    found = getattr(cls, "_flag_attributes", None)
    if found is not None:
        return found
    names: set = set()
    for info in _class_and_bases(cls):
        for name, method in info.methods.items():
            if name == "__init__":
                continue
            for node in ast.walk(method):
                tests = []
                if isinstance(node, ast.Compare):
                    tests = [node.left, *node.comparators]
                elif isinstance(node, (ast.If, ast.IfExp, ast.While)):
                    tests = [node.test]
                elif isinstance(node, ast.BoolOp):
                    tests = list(node.values)
                elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                    tests = [node.operand]
                names.update(t.attr for t in tests if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                             and t.value.id == "self")
    found = cls._flag_attributes = frozenset(names)
    return found


def _takes_literals(call: ast.Call, init: ast.FunctionDef) -> bool:
    """Is a literal flag (a string, bool or None) given in the call or a default of the constructor?"""
    a = init.args
    written = list(call.args) + [k.value for k in call.keywords] + a.defaults + [d for d in a.kw_defaults if d]
    return any(isinstance(e, ast.Constant) and (e.value is None or isinstance(e.value, (str, bool))) for e in written)


def _called_here(node, frame: Frame) -> bool:
    """Is this attribute read the callee of a call (`self.crp(out)`)?"""
    parent = frame.module.source.semantic.parent(node) if isinstance(node, ast.Attribute) else None
    return isinstance(parent, ast.Call) and parent.func is node


def _built_by_factory(fact, info: ClassInfo) -> bool:
    """`self.model = sequential(conv, *blocks, head)`: built by a function of the file that returns a container of
    layers or a layer with weights (`nn.Sequential(*modules)`, a project `nn.Module`) on some path."""
    value = fact.value
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)):
        return False
    module = info.module
    factory = module.functions.get(value.func.id)
    if factory is None:
        return False
    for node in ast.walk(factory):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Call):
            made = module.names.qualname(node.value.func) or ""
            tail = made.rsplit(".", 1)[-1]
            if made in CONTAINER_LAYERS or (api.is_layer_class(made) and tail not in api.PARAMETERLESS_LAYERS):
                return True
            cls = module.resolve_class(made) if made and "." not in made else None
            if cls is not None and cls.is_module:
                return True
    return False


def _built_by_argument(fact, info: ClassInfo) -> bool:
    """`self.crp = chained_residual_pool(features)`: built by a class or factory the constructor was given."""
    value = fact.value
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)):
        return False
    pending, seen = [info], set()
    while pending:  # the class, or the base whose method made the attribute
        cls = pending.pop()
        if id(cls) in seen:
            continue
        seen.add(id(cls))
        init = cls.methods.get(fact.method)
        if init is not None and init.lineno <= fact.stmt.lineno <= (init.end_lineno or init.lineno) \
                and cls.module.source is not None:
            return value.func.id in {a.arg for a in init.args.args + init.args.kwonlyargs}
        pending += [p for p in (cls.module.resolve_class(b) for b in cls.bases) if p is not None]
    return False
