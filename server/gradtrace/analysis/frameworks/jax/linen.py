"""Flax linen modules, as `model.apply(variables, x)` runs them: the module's `setup` and `__call__` (or the `method=`
given) run on the inputs, and each parameter it uses is the part of `variables` its submodule's path names
(`params.params.Dense_0` for the first `nn.Dense` of a compact `__call__`, `params.params.encoder` for a layer `setup`
sets as `self.encoder`, `params.params.w` for `self.param("w", ...)`). A cut inside the module (a rounding, a NumPy
conversion, a `stop_gradient`) is then seen against the parameters it cuts, as in a plain JAX function.
"""

from __future__ import annotations

import ast

from gradtrace.analysis.core.frames import Frame, FunctionRef
from gradtrace.analysis.core.values import UNKNOWN, Value, combine, flat, known_truth
from gradtrace.analysis.frameworks.jax.events import ImmutableCollection
from gradtrace.records import field, record, replace

LINEN = "flax.linen."
MODULE_BASES = frozenset({"flax.linen.Module", "flax.linen.module.Module"})
# `TrainState.create(apply_fn=model.apply, params=params, tx=tx)`
TRAIN_STATES = frozenset({"flax.training.train_state.TrainState.create"})
TRAIN_STATE_CLASSES = frozenset(name.rsplit(".", 1)[0] for name in TRAIN_STATES)
TRAIN_STATE = "train_state"
# `apply`'s own keyword arguments (not the module's)
APPLY_OPTIONS = frozenset({"method", "mutable", "rngs", "capture_intermediates"})
# layers that update a collection other than `params` while they run, and the flag that switches it off
STATEFUL_LAYERS = {"BatchNorm": ("batch_stats", "use_running_average")}


@record(eq=False)
class Scope:
    """One `apply` in progress: the variables it was given and the path of the module being run."""

    variables: Value
    path: tuple = ()
    counters: dict = field(default_factory=dict)  # layer class -> how many a compact method made so far
    mutable: bool = True  # may collections other than `params` change (`apply(..., mutable=[...])`)?
    call: ast.AST | None = None  # the `apply` call


def _derives_from(info, external: frozenset, depth: int = 0) -> bool:
    """A project class with one of the `external` classes among its bases (also through project base classes)."""
    if info is None or not hasattr(info, "bases") or depth > 16:
        return False
    for base in info.bases:
        if base in external:
            return True
        parent = info.module.resolve_class(base)
        if parent is not None and parent is not info and _derives_from(parent, external, depth + 1):
            return True
    return False


def is_linen_class(info) -> bool:
    """A `flax.linen.Module` subclass of the project."""
    return _derives_from(info, MODULE_BASES)


def is_train_state_class(info) -> bool:
    """A project subclass of flax's `TrainState`."""
    return _derives_from(info, TRAIN_STATE_CLASSES)


def part(plugin, variables: Value, keys) -> Value:
    """The part of a variables pytree that `keys` name (a dict's item, or a differentiated tree refined by key)."""
    value = variables
    for key in keys:
        if value.keys is not None and value.items is not None and key in value.keys:
            value = value.items[value.keys.index(key)]
        elif value.refinable:
            value = plugin.refine(value, key)
        else:
            return value
    return value


def new_layer(scope: Scope | None, qn: str, node: ast.Call, frame: Frame, kwargs: dict | None = None) -> Value:
    """`nn.Dense(8)`: a layer with its name in the module's variables (None until its attribute names it)."""
    tail = qn.rsplit(".", 1)[-1]
    name = next((k.value.value for k in node.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)
                 and isinstance(k.value.value, str)), None)
    in_setup = getattr(frame.func.node if frame.func else None, "name", None) == "setup"
    if name is None and scope is not None and not in_setup:
        count = scope.counters.get(tail, 0)
        scope.counters[tail] = count + 1
        name = f"{tail}_{count}"
    stateful = STATEFUL_LAYERS.get(tail)
    flag = (kwargs or {}).get(stateful[1]) if stateful else None
    return Value("module", ref=("linen", name, tail, known_truth(flag) if flag is not None else None), fw="jax")


def call_layer(plugin, layer: Value, node, args: list, kwargs: dict, frame: Frame) -> Value:
    """A linen layer applied: its output computes from the inputs and from its own part of the variables."""
    scope = plugin.linen[-1] if plugin.linen else None
    stateful = STATEFUL_LAYERS.get(layer.ref[2])
    if stateful and scope is not None and not scope.mutable and scope.call is not None:
        given = kwargs.get(stateful[1])
        frozen = known_truth(given) if given is not None else (layer.ref[3] if len(layer.ref) > 3 else None)
        variables = scope.variables
        missing = variables.kind == "dict" and variables.keys is not None and stateful[0] not in variables.keys
        if missing or frozen is False:  # it reads a collection it was not given, or updates one it may not change
            plugin.interp.emit(ImmutableCollection(scope.call, frame.module, layer.ref[2], stateful[0],
                                                   node, missing), frame)
    name = layer.ref[1]
    if name is None and isinstance(getattr(node, "func", None), ast.Attribute):
        name = node.func.attr  # made in `setup` as `self.<name>`
    inputs = [*args, *kwargs.values()]
    if scope is None or name is None:
        return combine("tensor", *inputs, fw="jax")
    own = part(plugin, scope.variables, ("params", *scope.path, name))
    weights = Value("tensor", srcs=own.srcs, cuts=own.cuts, traced=own.traced, jtraced=own.jtraced, deps=own.deps,
                    fw="jax")
    return combine("tensor", *inputs, weights, fw="jax")


def own_parameter(plugin, node: ast.Call) -> Value:
    """`self.param("w", init, shape)` inside the module being run."""
    scope = plugin.linen[-1]
    key = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
    if not isinstance(key, str):
        return UNKNOWN
    own = part(plugin, scope.variables, ("params", *scope.path, key))
    return Value("tensor", srcs=own.srcs, cuts=own.cuts, traced=own.traced, jtraced=own.jtraced, deps=own.deps,
                 fw="jax", dtype="float")


def run(plugin, module: Value, method: str, node, frame: Frame, args: list, kwargs: dict, scope: Scope):
    """Run one module's `setup` and then `method` under `scope`."""
    info = module.cls
    found = info.find_method(method)
    if found is None:
        return None
    plugin.linen.append(scope)
    try:
        setup = info.find_method("setup")
        if setup is not None:
            effects: dict = {}
            plugin.interp.call_function(FunctionRef(setup[0], setup[1].module, setup[1]), [module], {}, frame, node,
                                        self_effects=effects)
            attrs = dict(module.extra[1]) if module.extra[:1] == ("object",) else {}
            attrs.update({k: v for k, v in effects.items() if k and "." not in k})
            module = replace(module, extra=("object", tuple(sorted(attrs.items()))))
        fn = plugin.interp.method_value(module, found, frame, node)
        return plugin.interp.call_value(fn, node, frame, list(args), dict(kwargs))
    finally:
        plugin.linen.pop()


def apply(plugin, model: Value, node: ast.Call, frame: Frame, args: list, kwargs: dict) -> Value | None:
    """`model.apply(variables, *inputs, method=..., mutable=...)`."""
    method = "__call__"
    chosen = next((k.value for k in node.keywords if k.arg == "method"), None)
    if isinstance(chosen, ast.Constant) and isinstance(chosen.value, str):
        method = chosen.value
    elif isinstance(chosen, ast.Attribute):
        method = chosen.attr  # `method=MLP.encode`
    variables = args[0] if args else kwargs.get("variables", UNKNOWN)
    inputs = {k: v for k, v in kwargs.items() if k not in APPLY_OPTIONS and k != "variables"}
    mutable = next((k.value for k in node.keywords if k.arg == "mutable"), None)
    changes = mutable is not None and not (isinstance(mutable, ast.Constant) and mutable.value is False)
    out = run(plugin, model, method, node, frame, list(args[1:]), inputs, Scope(variables, mutable=changes, call=node))
    if out is None:
        return None
    if any(k.arg == "mutable" for k in node.keywords):
        return Value("container", items=(flat(out), UNKNOWN))  # (output, updated collections)
    return out


def call_submodule(plugin, module: Value, node, frame: Frame, args: list, kwargs: dict) -> Value | None:
    """A module of the project used inside another (`Block(8)(x)`, `self.block(x)`): its own path."""
    scope = plugin.linen[-1]
    name = None
    if isinstance(getattr(node, "func", None), ast.Attribute):
        name = node.func.attr
    if name is None:
        tail = module.cls.name
        count = scope.counters.get(tail, 0)
        scope.counters[tail] = count + 1
        name = f"{tail}_{count}"
    return run(plugin, module, "__call__", node, frame, args, kwargs,
               Scope(scope.variables, (*scope.path, name), mutable=scope.mutable, call=scope.call))


def train_state(kwargs: dict) -> Value:
    """A `TrainState`: its `apply_fn` and `params` as given."""
    params = kwargs.get("params", UNKNOWN)
    held = (("apply_fn", kwargs.get("apply_fn", UNKNOWN)), ("params", params))
    return Value("unknown", srcs=params.srcs, cuts=params.cuts, deps=params.deps, fw="jax",
                 extra=((TRAIN_STATE, held),))


def train_state_part(state: Value, attr: str) -> Value | None:
    """`state.apply_fn` / `state.params` of a `TrainState` made in the file."""
    for extra in state.extra:
        if isinstance(extra, tuple) and extra[:1] == (TRAIN_STATE,):
            return dict(extra[1]).get(attr)
    return None
