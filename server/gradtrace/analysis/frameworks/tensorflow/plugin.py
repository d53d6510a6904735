"""TensorFlow's and Keras's meaning for the interpreter: variables, tapes, layers and what cuts them.

Sources are trainable floating `tf.Variable`s (named `var@line:col`, wherever they are held: module globals,
locals, `self.w = tf.Variable(...)`, `self.add_weight(...)`), Keras layers and models built in the file
(`module@line:col`), tensors a tape watches, and the parameters of a function analysed on its own that it
calls or asks for variables (`param:model@line`). Cuts are `tf.stop_gradient`, NumPy and Python conversions,
`tf.numpy_function`, integer casts, argmax-like ops, rounding, floor division, metric results and
`assign` under a tape (`tf.py_function` is differentiable). Sinks are `tape.gradient`/`jacobian` targets,
`model.fit` and what a layer's `call` returns.
"""

from __future__ import annotations

import ast
from functools import cached_property

from gradtrace.analysis.core.frames import Frame, FunctionRef
from gradtrace.analysis.core.values import (
    EMPTY,
    NONE,
    UNKNOWN,
    Cut,
    Value,
    combine,
    covered,
    cut,
    dedup_cuts,
    flat,
    is_symbolic,
    join,
    known_truth,
    last_cuts,
)
from gradtrace.analysis.frameworks.common import (
    FUNCTION_SCOPES,
    FrameworkPlugin,
    binop_dtype,
    call_argument,
    compare_text,
    custom_derivative_call,
    dtype_of,
    joined_dtype,
    literal_dtype,
    self_cancelling,
)
from gradtrace.analysis.frameworks.tensorflow import api
from gradtrace.analysis.frameworks.tensorflow.events import (
    Applied,
    ClassOutput,
    Escape,
    Fit,
    ForwardArgument,
    FunctionalModel,
    GradCall,
    LostCut,
    TapeInfo,
    TrainableSet,
    Untracked,
    VarInfo,
)
from gradtrace.analysis.frameworks.tensorflow.tape_targets import TapeTargets
from gradtrace.analysis.names import canonical, dotted
from gradtrace.records import replace

TAPES = "tensorflow.tapes"  # frame state: the tapes recording, outermost first
WATCHED = "watched"  # `extra` mark of a tensor a tape watches
TF_KINDS = frozenset({"var", "tape", "varlist", "metric", "callable", "param", "grads", "grad", "opaque_grad",
                      "symbolic"})
LOOPS = (ast.For, ast.While, ast.AsyncFor)
DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)


class TensorFlowPlugin(FrameworkPlugin):
    name = "tensorflow"
    roots = api.ROOTS
    kinds = TF_KINDS

    def __init__(self, interp):
        super().__init__(interp)
        self.variables: dict[str, VarInfo] = {}  # id -> VarInfo
        # a layer with weights built on every step or call (`Dense(units)(inputs)` in a layer's `call()`):
        # constructor call -> (why it runs on every step, whether a `@tf.function` trace runs it)
        self.layers_per_step: dict = {}
        self.tapes: dict = {}  # GradientTape call node -> TapeInfo
        self.origin_names: dict[str, str] = {}  # source -> the name it was first bound to
        self.module_kinds: dict[str, str] = {}  # module source -> Keras class name
        self.layer_labels: dict[str, str] = {}  # module source -> its `name=` argument
        self.class_attrs: dict[str, dict] = {}  # class name -> attribute -> value (joined over assignments)
        self.grad_calls: dict = {}  # gradient node -> GradCall (last evaluation, target joined)
        self.lost_cuts: dict = {}  # cut node -> LostCut (merged)
        self.rebinds: dict = {}  # statement -> (name, VarInfo, repeated)
        self.targets = TapeTargets(self)  # gradient targets the tape did not record
        self.misapplied: dict = {}  # gradient node -> (GradCall, apply node, variables expr)
        self.trainable_set: dict = {}  # model source -> the last `model.trainable = ...` run so far
        self.frozen_models: set = set()  # model sources some `model.trainable = False` froze
        self.pretrained: set = set()  # model sources built by `keras.applications` (pretrained weights)
        self.frozen_fits: dict = {}  # `trainable = False` statement -> (TrainableSet, fit call)
        self.unbuilt_reads: dict = {}  # `model.trainable_variables` read before the model was built -> a step using it
        self.compiled_losses: dict = {}  # a model (its source, or its class) -> the loss function `compile` gave it
        self.untracked_fits: dict = {}  # source of a variable Keras does not track -> a `fit` of a model holding it
        self.custom_checked: set = set()  # `@tf.custom_gradient` calls already checked
        # `@tf.custom_gradient` function -> (its gradient function without `variables`, the variables it reads)
        self.custom_gradients: dict = {}
        self.call_live: dict[str, set] = {}  # class name -> sources that reach what its call returns
        self.call_kept: dict[str, set] = {}  # class name -> sources its call hands to `self.add_loss` and the like
        self.loss_runs: list = []  # the loss functions `compile` was given that are running now (as `fit` calls them)
        self.eager_losses: set = set()  # id(def) of those given to a `compile(run_eagerly=True)`
        self.traced_numpy: dict = {}  # `.numpy()` call -> what traces it (it raises AttributeError there)
        self.eager_callbacks = 0  # functions `tf.py_function` / `tf.numpy_function` run (eagerly) now
        self.call_incomplete: set[str] = set()  # classes whose call was not followed completely
        self.functional: list[Value] = []  # functional models built so far
        self.stack: list[FunctionRef] = []  # functions being analysed, outermost first
        self.objects: dict = {}  # id(ClassInfo) -> an instance built by its own __init__/build
        self.module_classes: dict = {}  # id(ClassInfo) -> is it a Keras layer/model or tf.Module?

    # ================================================================== layers
    def is_module_class(self, info, depth: int = 0) -> bool:
        """A Keras layer/model or a `tf.Module` (also through project base classes)."""
        if info is None or not hasattr(info, "bases"):
            return False
        found = self.module_classes.get(id(info))
        if found is not None:
            return found
        self.module_classes[id(info)] = False  # guards cycles
        result = False
        for base in info.bases:
            if base in api.MODULE_BASES or (base.endswith(api.MODULE_BASE_SUFFIXES)
                                            and base.split(".")[0] in api.ROOTS):
                result = True
                break
            parent = info.module.resolve_class(base)
            if parent is not None and parent is not info and depth < 16 and self.is_module_class(parent, depth + 1):
                result = True
                break
        self.module_classes[id(info)] = result
        return result

    def is_keras_class(self, info, depth: int = 0) -> bool:
        """A Keras layer or model class (also through project base classes), not a `tf.Module`."""
        if not self.is_module_class(info) or depth > 16:
            return False
        for base in info.bases:
            if base in api.PLAIN_MODULE_BASES or (base.endswith(".Module") and base.split(".")[0] in api.ROOTS):
                continue
            if base in api.MODULE_BASES or (base.endswith(api.MODULE_BASE_SUFFIXES) and base.split(".")[0] in api.ROOTS):
                return True
            parent = info.module.resolve_class(base)
            if parent is not None and parent is not info and self.is_keras_class(parent, depth + 1):
                return True
        return False

    def is_model(self, value: Value) -> bool:
        """A Keras layer or model: built in the file from Keras, or an instance of a layer class of the file."""
        return (value.kind == "module" and value.fw == "tensorflow") or (
            value.kind == "object" and self.is_module_class(value.cls))

    # ================================================================== names of sources
    def source_id(self, kind: str, node: ast.AST, frame: Frame) -> str:
        """`var@12:4` for a creation site in the file; qualified by its path in a project module it imports."""
        where = f"{node.lineno}:{node.col_offset}"
        if frame.module is not self.interp.root:
            where = f"{frame.module.path}:{where}"
        return f"{kind}@{where}"

    def name_origin(self, value: Value, name: str, cls: str | None = None, attr: str | None = None) -> None:
        info = value.ref if isinstance(value.ref, VarInfo) else None
        key = info.id if info is not None else value.ref if value.kind == "module" and isinstance(value.ref, str) \
            else None
        if key is None or key in self.origin_names:
            return
        self.origin_names[key] = name
        if info is not None:
            info.name, info.cls, info.attr = name, cls, attr

    def trains(self, source: str) -> bool:
        info = self.variables.get(source)
        if info is None and source in self.module_kinds and api.weightless(self.module_kinds[source]):
            return False  # `Activation("softmax")`: nothing in it to train
        return info.carries_gradient if info is not None else True

    # ================================================================== the transforms of the frame
    def context_key(self, frame: Frame, func: FunctionRef, node) -> tuple:
        return tuple(id(t) for t in (frame.state.get(TAPES) or ()))

    def enter_function(self, func: FunctionRef, frame: Frame, caller: Frame | None, node) -> None:
        tapes = (caller if caller is not None else frame).state.get(TAPES) or ()
        if tapes:
            frame.state[TAPES] = tapes
        self.stack.append(func)

    def leave_function(self, func: FunctionRef, frame: Frame, result: Value) -> None:
        if self.stack and self.stack[-1] is func:
            self.stack.pop()

    def in_training(self, frame: Frame) -> bool:
        """Under a tape, or in a layer's `call`/`__call__` (which runs under the caller's tape)."""
        return bool(frame.state.get(TAPES)) or any(f.name in api.CALL_METHODS for f in self.stack)

    def call_scope(self, frame: Frame) -> str | None:
        """The layer class whose `call` this frame runs, if it does."""
        func = frame.func
        if func is not None and func.name in api.CALL_METHODS and self.is_module_class(func.cls):
            return func.cls.name
        return None

    def escape(self, value: Value, node: ast.AST, frame: Frame, via: str | None = None) -> None:
        """A value kept beyond the return of a layer's `call`: what it carries may reach a loss."""
        if frame.func is not None and (value.srcs or value.cuts) and self.has_layers:
            self.interp.emit(Escape(node, frame.module, flat(value), self.call_scope(frame), via), frame)

    @cached_property
    def has_layers(self) -> bool:
        return any(self.is_module_class(info) for info in self.interp.root.classes.values())

    # ================================================================== tapes
    def enter_with(self, item: ast.withitem, value: Value, frame: Frame):
        if value.kind == "recording_pause" and isinstance(value.ref, TapeInfo):
            # `with tape.stop_recording():` the tape records nothing computed in the block
            previous = frame.state.get(TAPES) or ()
            frame.state[TAPES] = tuple(t for t in previous if t is not value.ref)
            block = self.scopes(frame.module).enclosing(item.context_expr, (ast.With, ast.AsyncWith))
            return ("pause", previous, block, value.made_at)
        if value.kind != "tape" or not isinstance(value.ref, TapeInfo):
            return None
        tape = value.ref
        with_node = self.scopes(frame.module).enclosing(item.context_expr, (ast.With, ast.AsyncWith))
        if isinstance(with_node, (ast.With, ast.AsyncWith)):
            tape.with_node = with_node
        if isinstance(item.optional_vars, ast.Name):
            tape.name = item.optional_vars.id
        elif isinstance(item.context_expr, ast.Name):
            tape.name = item.context_expr.id
        previous = (frame.state.get(TAPES) or ())
        frame.state[TAPES] = previous + (tape,)
        return ("tape", previous)

    def exit_with(self, token, frame: Frame) -> None:
        if isinstance(token, tuple) and token[0] == "tape":
            frame.state[TAPES] = token[1]
        elif isinstance(token, tuple) and token[0] == "pause":
            _, previous, block, node = token
            frame.state[TAPES] = previous
            for name in _assigned_names(block):  # what the block computed has no history on the tape
                value = frame.env.get(name)
                if value is not None and value.srcs and node is not None:
                    frame.env[name] = self.cut(node, "tape.stop_recording()", "stop_gradient", [value], frame)

    def tape_method(self, node: ast.Call, tape: TapeInfo, method: str, args: list, kwargs: dict,
                    frame: Frame) -> Value:
        if method == "watch" and node.args:
            self.watch(node, tape, args, frame)
        elif method in api.GRADIENT_METHODS and args:
            return self.gradient(node, tape, method, args, kwargs, frame)
        elif method == "stop_recording":
            return Value("recording_pause", ref=tape, made_at=node)
        return UNKNOWN

    def watch(self, node: ast.Call, tape: TapeInfo, args: list, frame: Frame) -> None:
        expr = node.args[0]
        if node not in tape.watch_nodes:
            tape.watch_nodes.append(node)
        for value in parts(args[0]) if args else ():
            if value.kind == "symbolic" and node not in tape.symbolic_watches:
                tape.symbolic_watches.append(node)
            if isinstance(value.ref, VarInfo):
                value.ref.watched = True
                tape.watched_ids.add(value.ref.id)
            tape.watched_ids.update(value.srcs)
            if value.kind in ("unknown", "param") or (value.kind == "container" and value.items is None):
                tape.watch_opaque = True
        here = frame.func.node if frame.func is not None else None
        home = self.scopes(frame.module).enclosing(tape.with_node, FUNCTION_SCOPES) \
            if tape.with_node is not None else here
        if here is not home or not isinstance(expr, (ast.Name, ast.Attribute, ast.List, ast.Tuple)):
            tape.watch_unknown = True
        for e in expr.elts if isinstance(expr, (ast.List, ast.Tuple)) else [expr]:
            tape.watched.add(ast.unparse(e))
            if isinstance(e, ast.Name):
                old = self.interp.lookup(e.id, frame) or UNKNOWN
                wid = f"watch@{e.lineno}:{e.col_offset}"
                self.origin_names.setdefault(wid, e.id)
                self.interp.store(e, Value("tensor", srcs=old.srcs | {wid}, cuts=old.cuts, dtype=old.dtype,
                                           fw="tensorflow", deps=old.deps, extra=(WATCHED,)), frame)

    def gradient(self, node: ast.Call, tape: TapeInfo, method: str, args: list, kwargs: dict,
                 frame: Frame) -> Value:
        target = args[0]
        sources_node = call_argument(node, "sources", 1)
        sources = kwargs.get("sources") or (args[1] if len(args) > 1 else UNKNOWN)
        pairs = source_list(sources_node, sources)
        scopes = self.scopes(frame.module)
        loop = scopes.enclosing(node, LOOPS + FUNCTION_SCOPES)
        in_loop = isinstance(loop, LOOPS) and (tape.with_node is None or not scopes.contains(loop, tape.with_node))
        values = tuple(v for _, v in pairs)
        call = GradCall(node, frame.module, tape, method, flat(target), Value("container", items=values),
                        tuple(e for e, _ in pairs), in_loop,
                        call_argument(node, "unconnected_gradients") is not None)
        self.interp.emit(call, frame)
        self.targets.check(node, tape, meant_of(values), frame, target)
        self.targets.sources(node, tape, pairs, frame)
        items = None
        if isinstance(sources_node, (ast.List, ast.Tuple)):
            items = tuple(Value("grad", ref=node, fw="tensorflow") for _ in pairs)
        return Value("grads", ref=node, items=items, fw="tensorflow")

    # ================================================================== events reaching the file's record
    def emit(self, event, frame: Frame):
        event = super().emit(event, frame)
        if event is None:
            return None
        if isinstance(event, (Escape, Untracked)) and event.scope is None:
            event.scope = self.call_scope(frame)
        if isinstance(event, ForwardArgument):
            self.targets.argument_seen(event, frame)
        if frame.summarising:
            return event
        if isinstance(event, GradCall):
            self.record_gradient(event)
        elif isinstance(event, Applied):
            self.record_applied(event)
        elif isinstance(event, Fit):
            self.fit_sink(event)
            self.fit_frozen(event)
        elif isinstance(event, TrainableSet):
            self.trainable_set[event.model] = event
            if not event.trainable:
                self.frozen_models.add(event.model)
        elif isinstance(event, FunctionalModel):
            self.functional.append(event.model)
        elif isinstance(event, ClassOutput):
            self.record_class_output(event)
        elif isinstance(event, Escape) and event.scope is not None:
            self.call_live.setdefault(event.scope, set()).update(reached(event.value))
            if event.via == "add_loss":  # what trains through that loss
                self.call_kept.setdefault(event.scope, set()).update(event.value.srcs)
        elif isinstance(event, Untracked) and event.scope is not None:
            self.call_incomplete.add(event.scope)
        return event

    def record_gradient(self, call: GradCall) -> None:
        values = call.sources.items or ()
        call.meant = meant_of(values)
        old = self.grad_calls.get(call.node)
        if old is not None:
            call.target = join(old.target, call.target)
            call.applied = old.applied
        self.grad_calls[call.node] = call
        tape = call.tape
        if all(c.node is not call.node for c in tape.calls):
            tape.calls.append(call)
        else:
            tape.calls = [call if c.node is call.node else c for c in tape.calls]
        for value in values:
            if isinstance(value.ref, VarInfo) and call.node not in value.ref.listed:
                value.ref.listed.append(call.node)
        self.record_unbuilt(values, call.node)
        self.record_lost(call.target, call.meant, call.node, "gradient")

    def record_unbuilt(self, values, sink: ast.AST) -> None:
        for value in values:
            for extra in value.extra:
                if isinstance(extra, tuple) and extra[:1] == ("unbuilt",):
                    self.unbuilt_reads.setdefault(extra[1], sink)

    def record_applied(self, event: Applied) -> None:
        applied = [v for _, v in source_list(None, event.variables)]
        self.record_unbuilt(applied, event.node)
        for value in applied:
            if isinstance(value.ref, VarInfo) and event.node not in value.ref.listed:
                value.ref.listed.append(event.node)
        call = self.grad_calls.get(event.gradient) if event.gradient is not None else None
        if call is None:
            return
        call.applied = True
        differentiated = variable_sources([v for v in call.sources.items or ()])
        updated = variable_sources(applied)
        # `tape.gradient(loss, teacher.trainable_variables)` applied to `student.trainable_variables`
        if not differentiated or not updated or any(covered(o, differentiated) for o in updated) or any(
                covered(o, updated) for o in differentiated):
            return
        self.misapplied.setdefault(call.node, (call, event.node, event.variables_expr))

    def record_lost(self, target: Value, meant, sink: ast.AST, sink_kind: str) -> None:
        cuts = last_cuts(target.cuts)
        cuts += [z for z in target.cuts if connected_zero(z.op) and z not in cuts and _beside_later_cuts(z, target.cuts)]
        # a path whose gradient is a connected zero (`x - x`, `tf.sign`) makes TensorFlow return zeros, not None,
        # for what it reaches: that cut is the one to name for those sources
        zeroed = frozenset(o for c in cuts if connected_zero(c.op) for o in c.lost)
        for c in cuts:
            lost = frozenset(o for o in c.lost
                             if self.trains(o) and not covered(o, target.srcs)
                             and (o in meant if meant is not None else not o.startswith("param:"))
                             and (connected_zero(c.op) or o not in zeroed))
            if not lost:
                continue
            old = self.lost_cuts.get(c.node)
            if old is None:
                self.lost_cuts[c.node] = LostCut(c, lost, sink, sink_kind)
            else:
                old.lost = old.lost | lost

    def fit_sink(self, event: Fit) -> None:
        """`model.fit(...)`: the loss is attached to the model's output, so a cut inside it loses what is
        upstream — unless another model built in the file trains those layers through its own output."""
        model = event.model
        elsewhere: set = set()
        for other in self.functional:
            if other.ref != model.ref and not (isinstance(other.ref, str) and isinstance(model.ref, str) and
                                               other.ref.split("#")[0] == model.ref.split("#")[0]):
                elsewhere |= other.srcs
        meant = set()
        for c in model.cuts:
            for o in c.lost:
                kind = self.module_kinds.get(o.split("#")[0])
                if (o.startswith("module@") and kind is None) or (kind is not None and api.weightless(kind)):
                    continue
                if not covered(o, frozenset(elsewhere)):
                    meant.add(o)
        self.record_lost(model, frozenset(meant), event.node, "fit")

    def fit_with_own_loss(self, model: Value, loss: Value, node: ast.Call, frame: Frame) -> None:
        """`model.compile(loss=my_loss)` then `model.fit(...)`: Keras calls `my_loss(y_true, y_pred)` on the model's
        output, so a cut inside the loss function loses the whole model."""
        if model.kind == "object":
            output = self.call_object(model, node, frame, [Value("tensor", dtype="float", fw="tensorflow")], {})
        else:
            output = Value("tensor", srcs=model.srcs, cuts=model.cuts, dtype="float", fw="tensorflow")
        if output is None or not output.srcs:
            return
        self.loss_runs.append(loss.func.node if loss.func is not None else None)
        try:
            result = flat(self.interp.call_value(loss, node, frame, [Value("tensor", fw="tensorflow"), output], {}))
        finally:
            self.loss_runs.pop()
        self.record_lost(result, output.srcs, node, "fit")

    def fit_frozen(self, event: Fit) -> None:
        """`model.fit(...)` / `train_on_batch` while the model's last `trainable` setting says False."""
        model = event.model.ref
        frozen = self.trainable_set.get(model) if isinstance(model, str) else None
        if frozen is not None and not frozen.trainable and not frozen.exclusive_with(event):
            self.frozen_fits.setdefault(frozen.node, (frozen, event.node))

    def record_class_output(self, event: ClassOutput) -> None:
        result = flat(event.result)
        self.call_live.setdefault(event.cls, set()).update(reached(result))
        own = frozenset(v.id for v in self.variables.values() if v.cls == event.cls)
        own |= frozenset(v.ref for v in self.class_attrs.get(event.cls, {}).values()
                         if v.kind == "module" and isinstance(v.ref, str))
        # what the call hands to `self.add_loss(...)` trains through that loss (a VQ layer's codebook)
        own -= self.call_kept.get(event.cls, set())
        self.record_lost(result, own, event.node, "call")

    # ================================================================== binding
    def on_bind(self, name: str, value: Value, frame: Frame, stmt) -> Value:
        value = self.per_call(value, stmt, frame)
        if isinstance(stmt, (ast.Assign, ast.AugAssign)):
            previous = self.interp.lookup(name, frame)
            if rebinds_variable(previous, value):
                loop = self.scopes(frame.module).enclosing(stmt, LOOPS + DEFS)
                self.rebinds.setdefault(stmt, (name, previous.ref, isinstance(loop, LOOPS)))
        self.name_origin(value, name)
        return value

    def per_call(self, value: Value, stmt, frame: Frame) -> Value:
        """A model built by a project factory (`teacher = make_net(); student = make_net()`): one per call site."""
        call = getattr(stmt, "value", None)
        if value.kind != "module" or not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            return value
        factory = self.interp.lookup(call.func.id, frame)
        if factory is None or factory.kind != "function" or factory.func is None:
            return value
        fn = factory.func.node
        first, last = fn.lineno, fn.end_lineno or fn.lineno
        suffix = f"#{call.lineno}:{call.col_offset}"

        def made_inside(source: str) -> bool:
            if not source.startswith("module@") or "#" in source:
                return False
            line = source.removeprefix("module@").split(":", 1)[0]
            return line.isdigit() and first <= int(line) <= last

        def rename(sources: frozenset) -> frozenset:
            return frozenset(s + suffix if made_inside(s) else s for s in sources)

        if not any(made_inside(s) for s in value.srcs):
            return value
        cuts = tuple(c.with_lost(rename(c.lost)) for c in value.cuts)
        ref = value.ref + suffix if isinstance(value.ref, str) and made_inside(value.ref) else value.ref
        if ref != value.ref and value.ref in self.module_kinds:
            self.module_kinds[ref] = self.module_kinds[value.ref]
        return replace(value, srcs=rename(value.srcs), cuts=cuts, ref=ref)

    def store_attribute(self, target: ast.Attribute, owner: Value, value: Value, frame: Frame, stmt) -> bool:
        snapshot = self.computed_at_construction(target, owner, value, frame, stmt)
        if snapshot is None and isinstance(stmt, ast.Assign):
            made = self.per_call(value, stmt, frame)  # `self.other = build_model()`: a model of its own
            snapshot = made if made is not value else None
        if snapshot is not None:
            value = snapshot
        self.escape(value, target, frame)
        if target.attr == "trainable" and owner.kind == "module" and isinstance(owner.ref, str) and isinstance(
                stmt, ast.Assign) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, bool):
            self.interp.emit(TrainableSet(stmt, frame.module, owner.ref, stmt.value.value), frame)
        if owner.kind == "object" and owner.cls is not None and hasattr(owner.cls, "name"):
            cls_name = owner.cls.name
            if self.is_keras_class(owner.cls) and getattr(frame.func.node if frame.func else None, "name", None) in (
                    "__init__", "build"):  # made once for the layer (one made per call is GT201's)
                for held in [value, *(value.items or ())]:
                    if isinstance(held.ref, VarInfo) and held.ref.raw and held.ref.keras_held is None:
                        held.ref.keras_held = f"{cls_name}.{target.attr}"
            self.name_origin(value, f"{cls_name}.{target.attr}", cls_name, target.attr)
            self.remember_attribute(cls_name, target.attr, value)
            previous = self.current_attribute(target, owner, frame)
            if isinstance(stmt, (ast.Assign, ast.AugAssign)) and rebinds_variable(previous, value):
                self.attribute_rebound(stmt, target, previous.ref, frame)
        if snapshot is not None and dotted(target):
            self.interp.store_path(dotted(target), snapshot, frame, mutation=True)
            return True
        return False

    def computed_at_construction(self, target: ast.Attribute, owner: Value, value: Value, frame: Frame,
                                 stmt) -> Value | None:
        """`self.m = tf.gather(self.w, ix)` in a layer's `__init__` or `build`: a tensor computed once from the
        variables, outside every tape; `call()` reuses that value, so no tape records its path to them."""
        fn = frame.func
        if value.kind != "tensor" or not isinstance(stmt, ast.Assign) or fn is None or getattr(
                fn.node, "name", None) not in ("__init__", "build") or not isinstance(target.value, ast.Name) or (
                target.value.id != "self" or owner.kind != "object" or not self.is_module_class(owner.cls)):
            return None
        variables = [s for s in value.srcs if isinstance(self.variables.get(s), VarInfo)]
        if not variables:
            return None
        op = f"`self.{target.attr}`, computed once in `{fn.node.name}()` outside every tape,"
        return self.cut(stmt.value, op, "snapshot", [value], frame)

    def current_attribute(self, target: ast.Attribute, owner: Value, frame: Frame) -> Value | None:
        key = f"{ast.unparse(target.value)}.{target.attr}"
        if key in frame.env:
            return frame.env[key]
        attrs = dict(owner.extra[1]) if owner.extra[:1] == ("object",) else {}
        return attrs.get(target.attr) or self.class_attrs.get(owner.cls.name, {}).get(target.attr)

    def attribute_rebound(self, stmt: ast.stmt, target: ast.Attribute, info: VarInfo, frame: Frame) -> None:
        # `self.w = self.w - lr * g`: the attribute outlives the call, so a method that differentiates with respect
        # to it and rebinds it breaks every later step, loop or not
        scopes = self.scopes(frame.module)
        loop = scopes.enclosing(stmt, LOOPS + DEFS)
        fn = scopes.enclosing(stmt, DEFS)
        repeated = isinstance(loop, LOOPS) or (
            fn is not None and fn.name not in ("__init__", "build") and self.has_training(fn, frame, tape_only=True))
        self.rebinds.setdefault(stmt, (ast.unparse(target), info, repeated))

    def remember_attribute(self, cls_name: str, attr: str, value: Value) -> None:
        """Class-level attributes (joined over every assignment) for what instances do not say themselves."""
        if any(is_symbolic(s) for s in value.srcs) or any(is_symbolic(s) for c in value.cuts for s in c.lost):
            return  # a summary's argument: not one value of the class
        value = replace(value, deps=EMPTY)
        attrs = self.class_attrs.setdefault(cls_name, {})
        old = attrs.get(attr)
        if old is None or old == value:
            attrs[attr] = value
        elif old.kind == value.kind and old.ref is value.ref and old.ref is not None:
            attrs[attr] = replace(old, srcs=old.srcs | value.srcs, cuts=dedup_cuts(old.cuts, value.cuts))
        else:
            attrs[attr] = join(old, value)

    def augassign(self, stmt: ast.AugAssign, target: Value, value: Value, frame: Frame):
        result = self.binop(stmt, stmt.op, target, value, frame)
        if result is not None and rebinds_variable(target, result):
            if isinstance(stmt.target, ast.Name):
                loop = self.scopes(frame.module).enclosing(stmt, LOOPS + DEFS)
                self.rebinds.setdefault(stmt, (stmt.target.id, target.ref, isinstance(loop, LOOPS)))
            elif isinstance(stmt.target, ast.Attribute):
                self.attribute_rebound(stmt, stmt.target, target.ref, frame)
        return result

    def store_subscript(self, target: ast.Subscript, base: Value, value: Value, frame: Frame, stmt) -> bool:
        self.escape(value, target, frame)
        return False

    # ================================================================== calls
    def external_call(self, qn: str, node: ast.Call, frame: Frame):
        qn = canonical(qn)  # `tf.keras.layers.Dense` reached through the attribute chain of `tf`
        root = qn.split(".", 1)[0]
        host = qn.startswith(api.HOST_ROOTS)
        if root not in api.ROOTS and not host:
            return None
        args, kwargs = self.interp.eval_args(node, frame)
        everything = list(args) + list(kwargs.values())
        if host:
            if not self.exclusive and not any(self.claims(a) for a in everything):
                return None
            op = "np." + qn.split(".", 1)[1] if qn.startswith("numpy.") else qn
            return self.cut(node, op, "numpy", everything, frame, result_kind="array")
        if frame.func is not None and any(a.kind in ("function", "method") for a in everything) and self.has_layers:
            # `tf.map_fn(lambda t: self.proj(t), x)`: the function's body is not followed
            self.interp.emit(Untracked(node, frame.module, self.call_scope(frame)), frame)
        if qn in api.VARIABLE_FACTORIES:
            return self.new_variable(node, args, kwargs, frame)
        if qn in api.STRUCTURE_MAPS and len(node.args) >= 2 and len(args) >= 2 and canonical(
                frame.module.names.qualname(node.args[0]) or "") in api.VARIABLE_FACTORIES:
            # `tf.nest.map_structure(tf.Variable, tree)`: the same tree, of new variables
            return self.variables_like(node, args[1], frame)
        if qn == api.TAPE:
            return self.new_tape(node)
        if qn in api.STOP_GRADIENT:
            return self.cut(node, "tf.stop_gradient", "stop_gradient", args, frame)
        if qn == api.PY_FUNCTION:  # records the TensorFlow ops its function runs: differentiable
            inputs = list(args[1:2]) + [v for k, v in kwargs.items() if k == "inp"]
            func = args[0] if args else kwargs.get("func")
            if inputs and func is not None and func.kind in ("function", "method") and self.numpy_inside(
                    func, node, frame, [replace(v, kind="tensor", fw="tensorflow") for v in self.interp.elements(inputs[0])]):
                # ...unless it computes with NumPy (`x.numpy()`): its gradient is then zero
                return self.cut(node, "tf.py_function", "zero_grad", inputs, frame)
            return combine("tensor", *inputs, fw="tensorflow")
        if qn in api.HOST_FUNCTIONS:
            out = self.cut(node, ast.unparse(node.func), "numpy", everything, frame)
            if args and args[0].kind in ("function", "method"):
                # the function runs too, on NumPy arrays: what it computes itself from the variables keeps its own
                # cuts (`.numpy()`), and eagerly the tape records it, so the call alone cuts only the inputs
                inputs = [Value("array", dtype=v.dtype) for v in self.interp.elements(args[1])] if len(args) > 1 else []
                self.eager_callbacks += 1
                try:
                    own = flat(self.interp.call_value(args[0], node, frame, inputs, {}) or UNKNOWN)
                finally:
                    self.eager_callbacks -= 1
                out = replace(out, srcs=out.srcs | own.srcs, cuts=dedup_cuts(out.cuts, own.cuts))
            return out
        return self.tf_call(node, qn, args, kwargs, frame)

    def compiled_loss(self, model: Value) -> Value | None:
        """The loss `compile` gave this model: where a function built and compiled it, under the model's name there
        (`module@19:8`; the caller knows it by the call too: `module@19:8#24:8`)."""
        key = model_key(model)
        while True:
            if key in self.compiled_losses:
                return self.compiled_losses[key]
            if not isinstance(key, str) or "#" not in key:
                return None
            key = key.rsplit("#", 1)[0]

    def numpy_inside(self, func: Value, node: ast.Call, frame: Frame, inputs: list) -> bool:
        """Does the function `tf.py_function` runs leave the tape (NumPy on what it was given), so that its
        result reaches none of its inputs?"""
        given = combine("tensor", *inputs) if inputs else Value()
        if not given.srcs:
            return False
        self.eager_callbacks += 1
        try:
            out = flat(self.interp.call_value(func, node, frame, inputs, {}) or UNKNOWN)
        finally:
            self.eager_callbacks -= 1
        return not (out.srcs & given.srcs) and any(c.kind == "numpy" and c.lost & given.srcs for c in out.cuts)

    def tf_call(self, node: ast.Call, qn: str, args: list, kwargs: dict, frame: Frame) -> Value:
        tail = qn.rsplit(".", 1)[-1]
        names = frame.module.names
        if qn in api.INPUTS:
            return Value("tensor", dtype="float", fw="tensorflow")
        if qn.startswith(api.DATASETS):  # `tf.data.Dataset.from_tensor_slices(x)`
            return combine("dataset", *args, *kwargs.values(), fw="tensorflow")
        if qn in api.FUNCTIONAL_MODELS and (args or kwargs):
            model = self.new_module(node, args, kwargs, frame)
            self.interp.emit(FunctionalModel(node, frame.module, model), frame)
            return model
        if qn == api.LAMBDA_LAYER and args and (args[0].kind in ("function", "method") or (
                args[0].kind == "external" and args[0].extra)):  # `Lambda(K.argmax, arguments={"axis": -1})` too
            module = self.new_module(node, [], {}, frame)
            return replace(module, extra=(("lambda", args[0]),))
        if qn in api.MODEL_FACTORIES or (qn.startswith(api.LAYER_PREFIXES) and tail not in api.NOT_LAYERS):
            return self.new_module(node, args, kwargs, frame)
        if qn in api.MODEL_COPIES:
            return self.new_module(node, [], {}, frame)  # a new model: its own variables
        if qn.startswith(api.CALLABLE_PREFIXES):
            if tail[:1].isupper():
                return Value("metric" if qn.startswith(api.METRIC_PREFIX) else "callable", ref=node,
                             fw="tensorflow")
            return combine("tensor", *args, *kwargs.values(), fw="tensorflow")
        if tail == api.CAST and (len(node.args) >= 2 or call_argument(node, "dtype") is not None):
            dtype = dtype_of(call_argument(node, "dtype", 1), names)
            if dtype == "int":
                return self.cut(node, "tf.cast(..., int)", "int_cast", args[:1], frame, dtype="int")
            source = flat(args[0]) if args else Value()
            if dtype != "int" and isinstance(source.ref, VarInfo) and source.ref.dtype == "int" \
                    and self.in_training(frame):  # to float, or to another tensor's dtype (`ops.cast(w, x.dtype)`)
                source.ref.cast_in_tape = True
            return Value("tensor", srcs=source.srcs, cuts=source.cuts, dtype=dtype, fw="tensorflow", deps=source.deps)
        if tail in api.INDEX_OPS:
            return self.cut(node, f"tf.{tail}", "int_cast", args[:1], frame, dtype="int")
        if tail in api.ZERO_GRAD_OPS:
            return self.cut(node, f"tf.{tail}", "zero_grad", args[:2] if "div" in tail else args[:1], frame)
        everything = list(args) + list(kwargs.values())
        out = replace(combine("tensor", *everything, fw="tensorflow"), dtype=joined_dtype(*everything))
        dtype = dtype_of(call_argument(node, "dtype", api.DTYPE_POSITION.get(tail)), names)
        if dtype is None and tail in ("constant", "convert_to_tensor") and node.args:
            dtype = literal_dtype(node.args[0])
        if dtype is None and tail == "fill" and len(node.args) > 1:
            dtype = literal_dtype(node.args[1])
        return replace(out, dtype=dtype or (out.dtype if out.dtype != "bool" else None), made_at=node)

    def variables_like(self, node: ast.Call, tree: Value, frame: Frame, depth: int = 0) -> Value:
        if tree.items is not None and depth < 6:
            items = tuple(self.variables_like(node, item, frame, depth + 1) for item in tree.items)
            merged = join(*items) if items else Value()
            return replace(tree, items=items, srcs=merged.srcs, cuts=merged.cuts)
        return self.new_variable(node, [tree], {}, frame)

    def new_tape(self, node: ast.Call) -> Value:
        tape = self.tapes.get(node)
        if tape is None:
            persistent = call_argument(node, "persistent", 0)
            auto = call_argument(node, "watch_accessed_variables", 1)
            tape = self.tapes[node] = TapeInfo(
                node, not (persistent is None or (isinstance(persistent, ast.Constant) and not persistent.value)),
                auto_watch=not (isinstance(auto, ast.Constant) and auto.value is False))
        return Value("tape", ref=tape, fw="tensorflow")

    def new_variable(self, node: ast.Call, args: list, kwargs: dict, frame: Frame, weight: bool = False) -> Value:
        trainable_node = call_argument(node, "trainable")
        trainable = not (isinstance(trainable_node, ast.Constant) and trainable_node.value is False)
        dtype = dtype_of(call_argument(node, "dtype"), frame.module.names)
        init_node = call_argument(node, "initial_value", None if weight else 0)
        init = kwargs.get("initial_value") or (args[0] if args and not weight else None)
        if dtype is None and not weight:
            dtype = literal_dtype(init_node) or (init.dtype if init is not None else None)
        if weight and dtype is None:
            dtype = "float"
        vid = self.source_id("var", node, frame)
        info = self.variables.get(vid)
        if info is None:
            info = self.variables[vid] = VarInfo(vid, node, trainable, dtype, local=frame.module is self.interp.root,
                                                 raw=not weight)
        if info.raw and info.keras_held is None:
            info.keras_held = self.held_by_keras_layer(node, frame)
        if info.per_step is None:
            info.per_step = self.per_step_reason(node, frame)
            info.compiled = info.per_step is not None and (any(
                qualname_of(d, f.module) == api.TF_FUNCTION for f in self.stack
                for d in getattr(f.node, "decorator_list", ())) or bool(
                self.loss_runs and id(self.loss_runs[-1]) not in self.eager_losses))
        return Value("var", srcs=frozenset({vid}) if info.carries_gradient else EMPTY,
                     cuts=init.cuts if init is not None else (), dtype=dtype, ref=info, fw="tensorflow", made_at=node)

    def new_module(self, node: ast.Call, args: list, kwargs: dict, frame: Frame) -> Value:
        mid = self.source_id("module", node, frame)
        qual = frame.module.names.qualname(node.func)
        if qual:
            self.module_kinds[mid] = qual.rsplit(".", 1)[-1]
            if ".applications." in qual:
                self.pretrained.add(mid)
            label = call_argument(node, "name")
            if isinstance(label, ast.Constant) and isinstance(label.value, str):
                self.layer_labels[mid] = label.value
            tail = qual.rsplit(".", 1)[-1]
            if qual.startswith(api.LAYER_PREFIXES) and tail[:1].isupper() and tail not in api.WEIGHTLESS_LAYERS \
                    and not tail.startswith(api.WEIGHTLESS_PREFIXES) and node not in self.layers_per_step:
                reason = self.per_step_reason(node, frame)
                if reason is not None:
                    self.layers_per_step[node] = (reason, any(
                        qualname_of(d, f.module) == api.TF_FUNCTION for f in self.stack
                        for d in getattr(f.node, "decorator_list", ())))
        inner = combine("unknown", *args, *kwargs.values())
        trainable = call_argument(node, "trainable")
        srcs = inner.srcs if isinstance(trainable, ast.Constant) and trainable.value is False else inner.srcs | {mid}
        extra = ()
        layers = args[0] if args else kwargs.get("layers")
        if qual in api.SEQUENTIAL and layers is not None and layers.items and any(
                item.kind == "object" for item in layers.items):
            extra = (("layers", layers.items),)  # a layer of the project's own among them: called in turn
        return Value("module", srcs=srcs, cuts=inner.cuts, dtype="float", ref=mid, fw="tensorflow", made_at=node,
                     deps=inner.deps, extra=extra)

    def cut(self, node: ast.AST, op: str, kind: str, inputs: list, frame: Frame, dtype: str | None = None,
            result_kind: str = "tensor") -> Value:
        """What an operation without a gradient returns: what its inputs carried (and should train) is cut here."""
        source = combine(result_kind, *inputs) if inputs else Value(result_kind)
        training = frozenset(s for s in source.srcs if self.trains(s))
        out = cut(replace(source, srcs=training), node, kind, op, zero=kind == "zero_grad", result_kind=result_kind,
                  module=frame.module, dtype=dtype or source.dtype, fw="tensorflow" if result_kind == "tensor" else None)
        return replace(out, made_at=node)

    # ================================================================== calls of values
    def call_object(self, callee: Value, node, frame: Frame, args, kwargs):
        kind = callee.kind
        if kind == "opaque_grad":
            self.check_custom_gradient(callee, node, frame, args, kwargs)
            return custom_derivative_call(args, kwargs)
        if kind == "metric":  # `metric(y, pred)` updates the state and returns `result()`
            metric = self.metric_updated(callee, node.func, args, kwargs, frame)
            return self.metric_result(node, metric, f"{ast.unparse(node.func)}(...)", frame)
        if kind == "callable":
            return combine("tensor", *args, *kwargs.values(), fw="tensorflow")
        if kind == "param" and isinstance(callee.ref, str):  # `model(x)` on a parameter
            out = combine("tensor", *args, *kwargs.values(), fw="tensorflow")
            return replace(out, srcs=out.srcs | {callee.ref})
        if kind == "module" and callee.fw == "tensorflow":
            layers = next((e[1] for e in callee.extra if isinstance(e, tuple) and e[0] == "layers"), None)
            if layers is not None and len(args) == 1:
                # `Sequential([Dense(...), MyLayer(), ...])(x)`: each layer on the one before's output, so what a
                # layer of the project's own cuts cuts the layers before it only
                x = args[0]
                for layer in layers:
                    if layer.kind in ("module", "object"):
                        x = flat(self.interp.call_value(layer, node, frame, [x], {}) or UNKNOWN)
                return replace(x, kind="tensor", srcs=x.srcs | {callee.ref}, fw="tensorflow")
            fn = next((e[1] for e in callee.extra if isinstance(e, tuple) and e[0] == "lambda"), None)
            if fn is not None and (fn.func is not None or fn.kind == "external"):  # keras.layers.Lambda(f)(x) runs f(x)
                out = flat(self.interp.call_value(fn, node, frame, list(args), {}))
                return replace(out, kind="tensor", srcs=out.srcs | callee.srcs, fw="tensorflow")
            return combine("tensor", callee, *args, *kwargs.values(), dtype="float", fw="tensorflow")
        if kind == "object" and self.is_module_class(callee.cls):
            found = next((f for f in (callee.cls.find_method(m) for m in ("__call__", "call", "forward")) if f), None)
            if found is None:
                return None
            method = self.interp.method_value(callee, found, frame, node)
            result = self.interp.call_value(method, node, frame, list(args), kwargs)
            self.interp.emit(ClassOutput(found[0], found[1].module, callee.cls.name, result), frame)
            return result
        return None

    def check_custom_gradient(self, callee: Value, node, frame: Frame, args, kwargs) -> None:
        """`@tf.custom_gradient` on a function that reads trainable variables itself (`self.kernel`): TensorFlow then
        calls its gradient function with `variables=`, and one that does not take them raises TypeError."""
        fn = callee.ref.func if isinstance(callee.ref, Value) else None
        if fn is None or not isinstance(fn.node, (ast.FunctionDef, ast.AsyncFunctionDef)) or id(node) in self.custom_checked:
            return
        self.custom_checked.add(id(node))
        grad_fn = returned_gradient_function(fn.node)
        if grad_fn is None or grad_fn.args.kwarg is not None or any(
                a.arg == "variables" for a in grad_fn.args.args + grad_fn.args.kwonlyargs):
            return
        result = flat(self.interp.call_value(callee.ref, node, frame, list(args), dict(kwargs)) or UNKNOWN)
        given = join(*args, *kwargs.values()).srcs if (args or kwargs) else EMPTY
        read = sorted(s for s in result.srcs if isinstance(self.variables.get(s), VarInfo) and s not in given
                      and self.variables[s].trainable)
        if read:
            self.custom_gradients.setdefault(fn.node, (grad_fn, tuple(read)))

    def instantiate(self, cls, node: ast.Call, frame: Frame, args, kwargs):
        if not self.is_module_class(cls):
            return None
        return self.build_object(cls, node, frame, list(args), kwargs)

    def build_object(self, cls, node, frame: Frame, args: list, kwargs: dict) -> Value:
        """An instance: what `__init__` and then Keras's `build` set on it."""
        obj = Value("object", cls=cls, fw="tensorflow")
        attrs = self.interp.construct(cls, obj, node, frame, args, kwargs)
        found = cls.find_method("build")
        if found is not None:
            built = replace(obj, extra=("object", tuple(sorted(attrs.items()))))
            effects: dict = {}
            self.interp.call_function(FunctionRef(found[0], found[1].module, found[1]), [built, UNKNOWN], {}, frame,
                                      node, self_effects=effects)
            attrs.update({k: v for k, v in effects.items() if k and "." not in k})
        return replace(obj, extra=("object", tuple(sorted(attrs.items()))))

    def builtin(self, name: str, node: ast.Call, frame: Frame, args, kwargs):
        first = args[0] if args else None
        if name in ("float", "int", "bool") and first is not None and self.claims(first) and (
                first.srcs or first.cuts or first.kind in ("tensor", "var")):
            return self.cut(node, f"{name}()", "python", [first], frame, result_kind="number",
                            dtype="float" if name == "float" else "int")
        if name == "zip" and any(a.kind in ("grads", "varlist") or var_like(a) for a in args):
            pair = Value("container", items=tuple(self.interp.element(a) for a in args))
            return Value("container", items=(pair,), srcs=join(*args).srcs, extra=(("zip", tuple(args)),))
        return None

    def element(self, value: Value):
        if value.kind == "varlist":
            return value  # one variable of the list: its sources are the list's
        if value.kind == "dataset":
            return Value("tensor", srcs=value.srcs, cuts=value.cuts, fw="tensorflow")
        return None

    # ================================================================== methods
    def method(self, receiver: Value, method: str, node: ast.Call, frame: Frame, args, kwargs):
        kind = receiver.kind
        if kind == "super":
            return None
        if kind == "opaque_grad":
            return NONE
        if kind == "dataset":
            return self.dataset_method(receiver, method, node, frame, args)
        if kind == "tape" and isinstance(receiver.ref, TapeInfo):
            return self.tape_method(node, receiver.ref, method, args, kwargs, frame)
        if kind == "metric" and method == "update_state":
            self.metric_updated(receiver, node.func.value, args, kwargs, frame)
            return UNKNOWN
        if kind == "metric" and method == "result":
            return self.metric_result(node, receiver, f"{ast.unparse(node.func.value)}.result()", frame)
        if method in api.WEIGHT_METHODS and (method == "add_weight" or kind == "object"):
            return self.new_variable(node, args, kwargs, frame, weight=True)
        if method == "compile" and self.is_model(receiver):
            loss = kwargs.get("loss") or (args[1] if len(args) > 1 else None)
            if loss is not None and loss.kind in ("function", "method") and loss.func is not None:
                self.compiled_losses[model_key(receiver)] = loss
                if known_truth(kwargs.get("run_eagerly", Value())) is True:
                    self.eager_losses.add(id(loss.func.node))  # unless it says so, Keras traces the step
            return UNKNOWN
        compiled = self.compiled_loss(receiver) if method in api.FIT_METHODS and self.is_model(receiver) else None
        if compiled is not None:
            self.fit_with_own_loss(receiver, compiled, node, frame)
        if method in api.FIT_METHODS and kind == "object" and self.is_keras_class(receiver.cls):
            # Keras trains the model's `trainable_variables`: not the `tf.Variable`s set on its layers
            held = list(self.object_attrs(receiver).values())
            found = join(*(flat(v) for v in held)).srcs | self.sublayer_sources(held) if held else EMPTY
            for source in sorted(found):
                if self.keras_untracked(source):
                    self.untracked_fits.setdefault(source, node)
        if method in api.FIT_METHODS and kind == "module" and receiver.fw == "tensorflow":
            self.interp.emit(Fit(node, frame.module, receiver), frame)
            return UNKNOWN
        if method in api.PREDICT_METHODS and args and self.is_model(receiver):
            # runs the model outside any tape and returns NumPy: no gradient reaches what it computed
            output = self.call_object(receiver, node, frame, args, {}) or combine("tensor", receiver, *args)
            return self.cut(node, f".{method}()", "numpy", [output], frame, result_kind="array")
        if method in api.MINIMIZE_METHODS and args and args[0].kind in ("function", "method"):
            var_list = kwargs.get("var_list") or (args[1] if len(args) > 1 else None)
            self.targets.minimized(node, args[0], meant_of(parts(var_list)) if var_list is not None else None, frame)
            return UNKNOWN
        if method in api.APPLY_METHODS and args and (method == "apply_gradients" or self.claims(receiver)):
            self.optimizer_apply(node, args[0], frame)
            return UNKNOWN
        if not self.claims(receiver) and not (kind == "object" and self.is_module_class(receiver.cls)):
            return None
        if method in api.ESCAPING:
            for value in list(args) + list(kwargs.values()):
                self.escape(value, node, frame, method)
            if kind in ("container", "dict", "unknown"):
                return None
        if method in api.ASSIGN_METHODS or (method in api.WEIGHT_SETTERS and self.is_model(receiver)):
            self.assign_in_tape(node, method, receiver, args, frame)
            return UNKNOWN
        if method == "numpy" and kind in ("tensor", "unknown") and frame.module is self.interp.root:
            traced = self.traced_by()
            if traced is not None:  # a symbolic tensor while the step is traced: it has no value to give
                self.traced_numpy.setdefault(node, traced)
        if method in api.HOST_METHODS and kind not in ("object", "class", "container", "dict", "str"):
            return self.cut(node, f".{method}()", api.HOST_METHODS[method], [receiver], frame, result_kind="array")
        if kind == "param" and isinstance(receiver.ref, str) and method not in api.GRADIENT_METHODS | {"watch"}:
            out = combine("tensor", *args, *kwargs.values(), fw="tensorflow")  # `model.call(x)` on a parameter
            return replace(out, srcs=out.srcs | {receiver.ref})
        if method == "astype" and node.args and dtype_of(node.args[0], frame.module.names) == "int":
            return self.cut(node, ".astype(int)", "int_cast", [receiver], frame)
        if kind in ("container", "dict", "str", "object", "class", "external", "function", "method", "none"):
            return None
        result_kind = "tensor" if kind in ("tensor", "var") else "unknown"
        everything = [receiver, *args, *kwargs.values()]
        return combine(result_kind, *everything, dtype=joined_dtype(*everything), fw="tensorflow")

    def dataset_method(self, dataset: Value, method: str, node: ast.Call, frame: Frame, args: list) -> Value:
        """`ds.map(f)`, `ds.reduce(init, f)`: the dataset runs `f` in its own graph, outside every tape, so what `f`
        reads of the variables (a closure, a layer) reaches its elements without a gradient. Other methods
        (`batch`, `shuffle`, ...) give the same data."""
        fn = next((a for a in reversed(args) if a.kind in ("function", "method", "module", "object")), None)
        if method not in api.DATASET_FUNCTION_METHODS or fn is None:
            return dataset
        element = Value("tensor", srcs=dataset.srcs, cuts=dataset.cuts, fw="tensorflow")
        inputs = [element, element] if method in ("reduce", "scan") else [element]
        result = flat(self.interp.call_value(fn, node, frame, inputs, {}) or UNKNOWN)
        computed = frozenset(s for s in result.srcs if s not in dataset.srcs)
        if computed:
            op = f"`.{method}(...)`, run in the dataset's graph outside every tape,"
            result = self.cut(node, op, "dataset", [replace(result, srcs=computed)], frame)
        kind = "tensor" if method == "reduce" else "dataset"
        return Value(kind, cuts=dedup_cuts(dataset.cuts, result.cuts), fw="tensorflow")

    def optimizer_apply(self, node: ast.Call, pairs: Value, frame: Frame) -> None:
        zipped = next((e[1] for e in pairs.extra if isinstance(e, tuple) and e[0] == "zip"), None)
        if zipped is None or len(zipped) < 2:
            return
        grads, variables = zipped[0], zipped[1]
        expr = node.args[0] if node.args else None
        variables_expr = expr.args[1] if isinstance(expr, ast.Call) and len(expr.args) >= 2 else None
        gradient = grads.ref if grads.kind == "grads" else None
        self.interp.emit(Applied(node, frame.module, gradient, variables, variables_expr), frame)

    def metric_updated(self, metric: Value, receiver: ast.AST, args, kwargs, frame: Frame) -> Value:
        """A Keras metric accumulates what `update_state` is given into variables of its own."""
        state = join(metric_state(metric), *(flat(a) for a in list(args) + list(kwargs.values())))
        updated = replace(metric, extra=(("state", state),))
        if isinstance(receiver, (ast.Name, ast.Attribute)):
            self.interp.store(receiver, updated, frame, mutation=isinstance(receiver, ast.Attribute))
        return updated

    def metric_result(self, node: ast.Call, metric: Value, op: str, frame: Frame) -> Value:
        """What a metric returns reads its variables back: no gradient to what it was given."""
        return self.cut(node, op, "metric", [metric_state(metric)], frame, dtype="float")

    def assign_in_tape(self, node: ast.Call, method: str, base: Value, args, frame: Frame) -> None:
        """`v.assign(expr)` (or `model.set_weights(values)`) under a tape: the tape does not record it, so what
        `expr` carries is cut from the variable (the model's variables) from here on."""
        if not frame.state.get(TAPES) or not args or not (isinstance(base.ref, VarInfo) or self.is_model(base)):
            return
        value = flat(args[0])
        lost = frozenset(o for o in value.srcs if self.trains(o) and not covered(o, base.srcs))
        target = node.func.value if isinstance(node.func, ast.Attribute) else None
        if not lost or not isinstance(target, (ast.Name, ast.Attribute)):
            return
        assigned = Cut(node, "assign", f".{method}()", lost, module=frame.module)
        self.interp.store(target, replace(base, cuts=dedup_cuts(base.cuts, value.cuts, (assigned,))), frame,
                          mutation=isinstance(target, ast.Attribute))

    # ================================================================== attributes and operators
    def attribute(self, base: Value, attr: str, node: ast.AST, frame: Frame):
        if attr == "losses" and self.call_kept and (self.is_model(base) or (
                base.kind == "object" and self.is_module_class(base.cls))):
            # `model.losses`: what its layers' calls handed to `self.add_loss(...)`, by the names this model knows
            # them by (a model a factory built is one per call site)
            held = self.attribute(base, "trainable_variables", node, frame) or Value()
            known = {s.split("#")[0]: s for s in held.srcs | frozenset(o for c in base.cuts for o in c.lost)}
            known.update({s.split("#")[0]: s for s in base.srcs})
            kept = frozenset(known[k.split("#")[0]] for k in frozenset().union(*self.call_kept.values())
                             if k.split("#")[0] in known)
            return Value("container", srcs=kept, items=(Value("tensor", srcs=kept, fw="tensorflow"),),
                         fw="tensorflow")
        if attr in api.SYMBOLIC_ATTRS and self.is_model(base) and not (
                base.kind == "object" and attr in self.object_attrs(base)):
            # `model.inputs`: the graph's placeholders, not data (a model built on `base.output` still holds base)
            return Value("symbolic", srcs=base.srcs, cuts=base.cuts, deps=base.deps, fw="tensorflow")
        if attr in api.VARIABLE_LISTS:
            if base.kind == "param" and isinstance(base.ref, str):
                return Value("varlist", srcs=frozenset({base.ref}), fw="tensorflow")
            unbuilt = (("unbuilt", node),) if self.read_before_built(base, node, frame) else ()
            if base.kind == "module" and base.fw == "tensorflow":
                return Value("varlist", srcs=base.srcs, cuts=base.cuts, fw="tensorflow", deps=base.deps, extra=unbuilt)
            if base.kind == "object" and self.is_module_class(base.cls):
                held = list(self.object_attrs(base).values())
                merged = join(*(flat(v) for v in held)) if held else Value()
                srcs = frozenset(s for s in merged.srcs | self.sublayer_sources(held) if not self.keras_untracked(s))
                return Value("varlist", srcs=srcs, fw="tensorflow", deps=merged.deps, extra=unbuilt)
        if base.kind == "object" and base.cls is not None and hasattr(base.cls, "find_method"):
            own = dict(base.extra[1]) if base.extra[:1] == ("object",) else {}
            if attr in own or base.cls.find_method(attr):
                return None
            return self.class_attrs.get(base.cls.name, {}).get(attr)  # set outside __init__/build
        if not self.claims(base) or base.kind in ("class", "container", "dict", "function", "method", "str", "external"):
            return None
        if attr in api.STATIC_ATTRS:
            return Value("meta", cuts=base.cuts, deps=base.deps)
        return Value("unknown", srcs=base.srcs, cuts=base.cuts, dtype=base.dtype, fw="tensorflow", deps=base.deps)

    def read_before_built(self, model: Value, node: ast.AST, frame: Frame) -> bool:
        """`model.trainable_variables` read where `model` was made, before anything called it, built it or was
        handed it, of a model whose weights are all made on its first call (a subclassed model whose `__init__`
        only sets layers, a `Sequential` without an input shape, a bare layer): an empty list."""
        if not isinstance(node, ast.Attribute) or not isinstance(node.value, ast.Name):
            return False
        semantic = frame.module.source.semantic
        binding = semantic.sole_binding(node.value)
        made = binding.statement if binding is not None else None
        if not (isinstance(made, ast.Assign) and isinstance(made.value, ast.Call) and (
                semantic.runs_before(made, node) or (isinstance(semantic.function_of(made), ast.Module) and not isinstance(
                    semantic.function_of(node), ast.Module)))):  # a module-level model read in a function: made first
            return False
        if any(not semantic.in_loop(made, loop) for loop in semantic.loops_around(node)):
            return False  # read again on later iterations
        here = semantic.function_of(node)
        for use in semantic.uses_of(binding):
            if use is node.value or semantic.function_of(use) is here and semantic.runs_before(node, use):
                continue
            parent = semantic.parent(use)
            if not isinstance(parent, ast.Attribute) or parent.attr not in api.UNBUILDING_ATTRS:
                return False  # a call, or the model handed on: built there, perhaps before (another function's)
        return self.weights_made_on_call(model, made.value, frame)

    def weights_made_on_call(self, model: Value, call: ast.Call, frame: Frame) -> bool:
        if model.kind == "module" and model.fw == "tensorflow":
            qual = frame.module.names.qualname(call.func) or ""
            if qual in api.SEQUENTIAL:
                layers = call.args[0] if call.args else call_argument(call, "layers")
                first = layers.elts[0] if isinstance(layers, (ast.List, ast.Tuple)) and layers.elts else None
                return isinstance(first, ast.Call) and frame.module.names.qualname(first.func) not in api.INPUTS and (
                    not any(k.arg in api.INPUT_SHAPE_ARGS for k in first.keywords))
            return qual.startswith("keras.layers.") and not api.weightless(qual.rsplit(".", 1)[-1]) and (
                qual not in api.INPUTS)
        if model.kind != "object" or not self.is_keras_class(model.cls):
            return False
        init = model.cls.find_method("__init__")
        if init is None:
            return False
        for sub in ast.walk(init[0]):
            if isinstance(sub, ast.Call):
                text = ast.unparse(sub.func)
                if text in ("self", "self.build", "super().build") or (
                        text == "super().__init__" and (sub.args or sub.keywords)):
                    return False  # built in `__init__`, or a functional model (`super().__init__(inputs, outputs)`)
        held = list(self.object_attrs(model).values())
        if any(isinstance(v.ref, VarInfo) and not v.ref.raw for v in held):
            return False  # `self.add_weight(...)`: made at once
        return any(v.kind in ("module", "object") and v.srcs or v.kind == "object" and self.is_keras_class(v.cls)
                   for v in held) or model.cls.find_method("build") is not None

    def held_by_keras_layer(self, node: ast.Call, frame: Frame) -> str | None:
        """`Class.attr` when a Keras layer's `__init__`, `build` or a helper of theirs makes this `tf.Variable` for
        `self.attr` (set, or appended to a list there): Keras 3 tracks only what `add_weight` makes. (One made in
        `call` is made per call: GT201.)"""
        fn = frame.func
        if fn is None or fn.cls is None or getattr(fn.node, "name", None) in ("call", "__call__") or not (
                self.is_keras_class(fn.cls)):
            return None
        stmt = frame.module.source.semantic.statement_of(node)
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(
            stmt, (ast.AnnAssign, ast.AugAssign)) else []
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Attribute):
            targets = [stmt.value.func.value]  # `self.kernels.append(tf.Variable(...))`
        for target in targets:
            while isinstance(target, ast.Subscript):
                target = target.value
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                return f"{fn.cls.name}.{target.attr}"
        return None

    def keras_untracked(self, source: str) -> bool:
        """A `tf.Variable` set on a Keras layer: Keras 3 leaves it out of the layer's variable lists."""
        info = self.variables.get(source)
        return info is not None and info.keras_held is not None

    def sublayer_sources(self, held: list, depth: int = 0) -> frozenset:
        """What the project's own layers among `held` hold, through their own layers: the variables and layers
        their `build` made when Keras first called them (`self.layer1 = CustomLayer(64)`)."""
        found: set = set()
        for value in held:
            if depth < 4 and value.items:
                found |= self.sublayer_sources(list(value.items), depth + 1)
            if depth < 4 and value.kind == "object" and self.is_module_class(value.cls):
                inner = list(self.object_attrs(value).values())
                found |= join(*(flat(v) for v in inner)).srcs if inner else EMPTY
                found |= self.sublayer_sources(inner, depth + 1)
        return frozenset(found)

    def object_attrs(self, obj: Value) -> dict:
        attrs = dict(self.class_attrs.get(obj.cls.name, {}))
        if obj.extra[:1] == ("object",):
            attrs.update(obj.extra[1])
        return attrs

    def subscript(self, node: ast.Subscript, base: Value, index: Value, frame: Frame):
        if base.items is None and base.kind in ("var", "module", "varlist") and self.claims(base):
            return Value("tensor", srcs=base.srcs, cuts=dedup_cuts(base.cuts, index.cuts), dtype=base.dtype,
                         fw="tensorflow", deps=base.deps | index.deps)
        return None

    def binop(self, node, op, left: Value, right: Value, frame: Frame):
        if isinstance(op, ast.Add) and var_like(left) and var_like(right) and (
                left.items is not None or right.items is not None or left.kind == right.kind == "varlist"):
            # `model.trainable_variables + [temperature]` keeps its parts (the sources of a gradient)
            return variable_list(parts(left) + parts(right))
        kinds = {left.kind, right.kind}
        if kinds <= {"container", "dict"} or "str" in kinds or not (self.claims(left) or self.claims(right)):
            return None
        a, b = flat(left), flat(right)
        if isinstance(op, ast.FloorDiv) and "tensor" in (a.kind, b.kind) and "int" not in (a.dtype, b.dtype):
            return self.cut(node, "//", "zero_grad", [a, b], frame)  # float `//` is FloorDiv: no gradient
        cancelled = self_cancelling(node)
        if cancelled is not None and a.kind == "tensor" and a.srcs:
            return self.cut(node, cancelled, "zero_grad", [a], frame)  # `x - x`: its gradients cancel exactly
        if {a.kind, b.kind} <= {"number"}:
            kind = "number"
        else:
            kind = next((k for k in ("tensor", "array") if k in (a.kind, b.kind)), "unknown")
        return combine(kind, a, b, dtype=binop_dtype(op, a.dtype, b.dtype),
                       fw="tensorflow" if kind in ("tensor", "unknown") else None)

    def compare(self, node: ast.Compare, values: list, frame: Frame):
        if not any(self.claims(v) for v in values):
            return None
        for value in values:  # a mask computed by a layer reaches the output, without a gradient: not unused
            self.escape(value, node, frame)
        if all(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops):
            return None
        merged = join(*values)
        kind = "tensor" if any(v.kind in ("tensor", "var") for v in values) else "number"
        if kind == "tensor" and merged.srcs and not any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            # `tf.cast(y_pred > 0.5, tf.float32)`: a comparison has no gradient, what it compares is cut here
            return self.cut(node, compare_text(node), "int_cast", values, frame, dtype="bool")
        return Value(kind, dtype="bool", cuts=merged.cuts, deps=merged.deps, fw="tensorflow" if kind == "tensor" else None)

    def decorate(self, qn, decorator, func: Value, frame: Frame):
        if qn == "tensorflow.custom_gradient":
            return Value("opaque_grad", ref=func)  # its own derivative: differentiable, never a cut
        return None

    def merge(self, values: list):
        if all(v.kind == "metric" and v.ref is values[0].ref for v in values):
            return replace(values[0], extra=(("state", join(*(metric_state(v) for v in values))),))
        return None

    def after_value(self, node: ast.AST, value: Value, frame: Frame) -> Value:
        if value.kind == "var" and type(node) in (ast.Name, ast.Attribute) and frame.state.get(TAPES) \
                and isinstance(value.ref, VarInfo):
            value.ref.read_in_tape = True
        return value

    # ================================================================== where variables are made
    def traced_by(self) -> str | None:
        """What traces the code running now into a graph: a `@tf.function` around it, or `model.fit` running the
        loss `compile` was given (unless `run_eagerly=True`); None when it runs eagerly."""
        if self.eager_callbacks or "run_functions_eagerly(True)" in self.interp.root.source.text:
            return None  # `tf.py_function` / `tf.numpy_function` run their function eagerly
        for f in self.stack:
            if any(qualname_of(d, f.module) == api.TF_FUNCTION for d in getattr(f.node, "decorator_list", ())):
                return f"`@tf.function` on `{f.name}()`"
        if self.loss_runs and id(self.loss_runs[-1]) not in self.eager_losses:
            return f"`model.fit` traces `{self.loss_runs[-1].name}()`"
        return None

    def per_step_reason(self, node: ast.Call, frame: Frame) -> str | None:
        scopes = self.scopes(frame.module)
        if self.lazy_guard(node, scopes):
            return None
        if self.loss_runs and any(f.node is self.loss_runs[-1] for f in self.stack):
            return f"in `{self.loss_runs[-1].name}()`, the loss Keras calls on every step"
        if frame.state.get(TAPES):
            looped = isinstance(scopes.enclosing(node, LOOPS + FUNCTION_SCOPES), LOOPS) or any(
                isinstance(f.node, DEFS) and self.step_function(f.node, frame) for f in self.stack)
            return "inside the GradientTape, on every step" if looped else "inside the GradientTape"
        for f in reversed(self.stack):
            if f.name in api.CALL_METHODS and self.is_module_class(f.cls):
                return f"in `{f.name}()`, on every call of the layer"
        loop = scopes.enclosing(node, LOOPS + DEFS)
        if isinstance(loop, LOOPS) and self.has_training(loop, frame) and not self.separate_runs(loop, frame):
            return "inside the training loop"
        fn = scopes.enclosing(node, DEFS)
        if fn is not None and fn.name not in ("__init__", "build") and self.step_function(fn, frame):
            return f"in `{fn.name}()`, which runs one training step per call"
        return None

    @staticmethod
    def lazy_guard(node: ast.AST, scopes) -> bool:
        """Created under `if self.w is None`, `if not self.built`, `if not hasattr(...)`: once."""
        current = scopes.enclosing(node, DEFS + (ast.If, ast.IfExp))
        while isinstance(current, (ast.If, ast.IfExp)):
            text = ast.dump(current.test)
            if "value=None" in text or "built" in text or "hasattr" in text or "'_" in text:
                return True
            current = scopes.enclosing(current, DEFS + (ast.If, ast.IfExp))
        return False

    def step_function(self, fn: ast.AST, frame: Frame) -> bool:
        """Does `fn` run a tape and an update once per call (a train step), not a whole training loop?"""
        if not self.calls_within("updates", fn, frame):
            return False
        scopes = self.scopes(frame.module)
        return any(scopes.enclosing(call, LOOPS + DEFS) is fn for call in self.calls_within("tapes", fn, frame))

    def separate_runs(self, loop: ast.AST, frame: Frame) -> bool:
        """Is each iteration of `loop` a training run of its own (a test case per dtype), not one step? Its
        optimizer steps all run in an inner loop, or by an optimizer the same iteration made."""
        scopes = self.scopes(frame.module)
        steps = self.calls_within("applies", loop, frame) + self.calls_within("minimizes", loop, frame)
        if not steps:
            return False
        for call in steps:
            inner = scopes.enclosing(call, LOOPS + DEFS)
            if inner is not loop and isinstance(inner, LOOPS):
                continue
            receiver = call.func.value
            if isinstance(receiver, ast.Call) or (isinstance(receiver, ast.Name) and any(
                    scopes.assignments_to(receiver.id, loop, own_scope_only=True))):
                continue
            return False
        return True

    def has_training(self, scope: ast.AST, frame: Frame, tape_only: bool = False) -> bool:
        return bool(self.calls_within("tapes", scope, frame) or (
            not tape_only and self.calls_within("applies", scope, frame)))

    def calls_within(self, selection: str, scope: ast.AST, frame: Frame) -> list:
        """Tape constructions (`tapes`), per-step updates (`updates`), `apply_gradients` calls (`applies`) or
        `minimize` calls (`minimizes`)."""
        names = frame.module.names

        def choose(call: ast.Call) -> bool:
            if selection == "tapes":
                return (names.qualname(call.func) or "") == api.TAPE
            attr = call.func.attr if isinstance(call.func, ast.Attribute) else None
            if selection == "updates":
                return attr in api.STEP_UPDATES
            return attr == ("minimize" if selection == "minimizes" else "apply_gradients")

        return self.scopes(frame.module).selected(("calls", selection), scope, choose)

    # ================================================================== what nothing called
    def analyse_uncalled(self) -> None:
        interp = self.interp
        root = interp.root
        frame = Frame(root, interp.globals.get(root.path, {}), top=True)
        relevant = {id(fn) for fn, _ in self.relevant_functions()}
        for info in root.classes.values():
            self.standalone_object(info, frame)
        for fn in root.functions.values():
            if id(fn) not in interp.analysed and id(fn) in relevant:
                func = FunctionRef(fn, root, None)
                self.run_on_its_own(func, None, self.parameter_of(func))
        for info in root.classes.values():
            obj = self.standalone_object(info, frame)
            layer = self.is_module_class(info)
            for name, fn in info.methods.items():
                if id(fn) in interp.analysed or not (layer or id(fn) in relevant):
                    continue
                func = FunctionRef(fn, root, info)
                run = self.run_on_its_own(func, obj, self.parameter_of(func))
                if name in api.CALL_METHODS and layer:
                    interp.emit(ClassOutput(fn, root, info.name, interp.result_of(run)), run)

    def standalone_object(self, info, frame: Frame) -> Value:
        """An instance of a class of the file, built by its own `__init__`/`build` with parameters for arguments."""
        found = self.objects.get(id(info))
        if found is None:
            init = info.find_method("__init__")
            args = []
            if init is not None:
                func = FunctionRef(init[0], init[1].module, init[1])
                args = [self.parameter_of(func)(p) for p in func.params()[1:]]
            found = self.objects[id(info)] = self.build_object(info, None, frame, args, {})
        return found

    def parameter_of(self, func: FunctionRef):
        """A parameter of a function analysed on its own: a model if it is called or asked for its variables."""
        def parameter(name: str) -> Value:
            pid = f"param:{name}@{func.node.lineno}"
            self.origin_names.setdefault(pid, name)
            return Value("param", ref=pid, fw="tensorflow")

        return parameter


def returned_gradient_function(fn: ast.FunctionDef) -> ast.FunctionDef | None:
    """The nested function a `@tf.custom_gradient` function returns as its gradient (`return out, grad`)."""
    nested = {n.name: n for n in fn.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for node in ast.walk(fn):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and len(node.value.elts) == 2:
            grad = node.value.elts[1]
            if isinstance(grad, ast.Name) and grad.id in nested:
                return nested[grad.id]
    return None


def _beside_later_cuts(cut, cuts: tuple) -> bool:
    """Is every later cut that loses the same sources a neighbour of `cut` in one expression (`x - x +
    one_hot(argmax(x))`), not one its result went through (`argmax(sign(x))`)?"""
    later = list(cuts[cuts.index(cut) + 1:])
    return all(getattr(d.node, "lineno", -1) == getattr(cut.node, "lineno", -2)
               and not any(n is cut.node for n in ast.walk(d.node)) for d in later if d.lost >= cut.lost)


def connected_zero(op: str) -> bool:
    """An operation TensorFlow differentiates to an exact zero (not to None): `tf.sign`, a NumPy `py_function`,
    `x - x`."""
    left, sep, right = op.partition(" - ")
    return op in ("tf.sign", "tf.py_function") or (bool(sep) and left == right)


def model_key(model: Value):
    """What names one Keras model across the run: its source for a model Keras built, its class for the file's own."""
    return model.ref if model.kind == "module" else id(model.cls)


def parts(value: Value) -> list:
    return list(value.items) if value.items is not None else [value]


def var_like(value: Value) -> bool:
    """A variable, a model's variable list, or a literal list of those."""
    if isinstance(value.ref, VarInfo) or value.kind == "varlist":
        return True
    return value.kind == "container" and value.items is not None and all(var_like(v) for v in value.items)


def variable_list(items: list) -> Value:
    merged = join(*items) if items else Value()
    return Value("container", srcs=merged.srcs, cuts=merged.cuts, items=tuple(items), deps=merged.deps)


def source_list(node: ast.AST | None, value: Value) -> list:
    """(expression or None, value) of each source of a gradient: a literal list's elements, or the items of
    what was passed, flattened."""
    if isinstance(node, (ast.List, ast.Tuple)) and value.items is not None and len(value.items) == len(node.elts):
        return list(zip(node.elts, value.items))
    if value.items is not None:
        out = []
        for item in value.items:
            out.extend(source_list(None, item) if item.items is not None else [(None, item)])
        return out
    return [(node, value)]


def meant_of(values) -> frozenset | None:
    """The sources a gradient is meant to train (None: the whole model, unknown)."""
    meant: set = set()
    for value in values:
        if isinstance(value.ref, VarInfo):
            meant.add(value.ref.id)
        elif value.kind in ("tensor", "varlist", "module") and value.srcs:
            meant |= value.srcs
            for c in value.cuts:
                meant |= c.lost
        elif value.kind in ("tensor", "array", "number"):
            continue
        else:
            return None
    return frozenset(meant)


def variable_sources(values: list) -> frozenset:
    """The sources of a list of variables (empty unless every element is a variable or a variable list)."""
    if not values or not all(v.kind == "varlist" or isinstance(v.ref, VarInfo) for v in values):
        return EMPTY
    return frozenset().union(*(v.srcs for v in values))


def reached(value: Value) -> set:
    """Sources a value carries, or had before a cut: whatever reaches it at all."""
    out = set(value.srcs)
    for c in value.cuts:
        out |= c.lost
    return out


def rebinds_variable(previous: Value | None, value: Value) -> bool:
    """`w = w - lr * g`: a name that held a variable now holds a tensor computed from it."""
    return previous is not None and previous.kind == "var" and isinstance(previous.ref, VarInfo) \
        and not isinstance(value.ref, VarInfo) and bool(previous.srcs) and previous.srcs <= value.srcs


def metric_state(metric: Value) -> Value:
    return next((e[1] for e in metric.extra if isinstance(e, tuple) and e[0] == "state"), Value())


def qualname_of(decorator: ast.AST, module) -> str | None:
    """`tensorflow.function` for `@tf.function` and `@tf.function(jit_compile=True)`."""
    return module.names.qualname(decorator.func if isinstance(decorator, ast.Call) else decorator)


def _assigned_names(block) -> list[str]:
    """Plain names the statements of a `with` block assign (`d_emb = ...`, `a, b = ...`)."""
    if not isinstance(block, (ast.With, ast.AsyncWith)):
        return []
    names: list[str] = []
    for stmt in block.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(
            stmt, (ast.AnnAssign, ast.AugAssign)) else []
        for target in targets:
            names += [n.id for n in ast.walk(target) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    return names
