"""What a TensorFlow program does that the GT2xx rules read: variables, tapes, gradients, optimizer steps.

`VarInfo` and `TapeInfo` are one per creation site and are completed as the run goes. The events carry the
values a summary names symbolically; they are renamed at each call site and read once they reach the
file's record (see `TensorFlowPlugin.emit`).
"""

from __future__ import annotations

import ast

from gradtrace.analysis.core.frames import Event
from gradtrace.analysis.core.values import Cut, Value
from gradtrace.records import field, record


@record(eq=False)
class VarInfo:
    """A `tf.Variable` or `add_weight` call site."""

    id: str  # the source name of what it creates: "var@line:col"
    node: ast.Call
    trainable: bool
    dtype: str | None
    local: bool = True  # made in the file being checked (not in a project module it imports)
    name: str | None = None
    cls: str | None = None  # owning class for `self.x = ...`
    attr: str | None = None
    per_step: str | None = None  # why this creation happens on every step (None: once)
    compiled: bool = False  # created while a `@tf.function` runs: its trace refuses a second variable
    listed: list = field(default_factory=list)  # gradient/apply nodes that name it as a source
    read_in_tape: bool = False
    cast_in_tape: bool = False  # an int variable cast to float where a loss is computed: meant as a parameter
    watched: bool = False  # handed to `tape.watch`: differentiated even when trainable=False
    raw: bool = False  # made by `tf.Variable(...)`, not by a layer's `add_weight`
    keras_held: str | None = None  # `Class.attr` of a Keras layer holding this raw variable: Keras 3 does not track it

    @property
    def carries_gradient(self) -> bool:
        return self.trainable and self.dtype != "int"


@record(eq=False)
class TapeInfo:
    """A `tf.GradientTape(...)` call site."""

    node: ast.Call
    persistent: bool
    auto_watch: bool = True  # False: `GradientTape(watch_accessed_variables=False)`
    with_node: ast.With | None = None
    name: str | None = None
    watched: set = field(default_factory=set)  # expressions watched, as written
    watch_unknown: bool = False  # watch() called on something we cannot name (a helper's loop variable...)
    watched_ids: set = field(default_factory=set)  # variables watch() was given
    watch_nodes: list = field(default_factory=list)  # the watch() calls
    watch_opaque: bool = False  # watch() given something whose variables we cannot tell
    symbolic_watches: list = field(default_factory=list)  # watch() calls given a model's symbolic inputs
    calls: list = field(default_factory=list)  # GradCall in evaluation order (one per node)


@record(eq=False)
class GradCall(Event):
    """`tape.gradient(target, sources)` (or jacobian): `sources` holds each source as an item."""

    tape: TapeInfo
    method: str
    target: Value
    sources: Value
    exprs: tuple  # the source expressions as written (None where not a literal element)
    in_loop: bool
    has_unconnected: bool
    meant: frozenset | None = None  # what is meant to train (None: the whole model), set when recorded
    applied: bool = False

    @property
    def source_pairs(self) -> list:
        """(expression or None, value) of each source."""
        return list(zip(self.exprs, self.sources.items or ()))


@record(eq=False)
class Applied(Event):
    """`optimizer.apply_gradients(zip(grads, variables))`: the gradients of `gradient` update `variables`."""

    gradient: ast.AST | None  # the gradient call the grads come from
    variables: Value
    variables_expr: ast.AST | None


@record(eq=False)
class ForwardArgument(Event):
    """The target of `tape.gradient` (`node`) depends on the variables only through the argument `param`,
    computed by the caller before the tape started; `site` is the caller's argument, once known."""

    value: Value
    param: str
    target: str
    with_node: ast.AST
    function: ast.AST
    meant: frozenset | None
    site: ast.AST | None = None


@record(eq=False)
class TrainableSet(Event):
    """`model.trainable = False` (or True) as a statement (`node`) on the Keras model `model` (its source)."""

    model: str
    trainable: bool


@record(eq=False)
class Fit(Event):
    """`model.fit(...)`: the model's output is the loss's input."""

    model: Value


@record(eq=False)
class FunctionalModel(Event):
    """`keras.Model(inputs, outputs)`: a model built from layers' outputs."""

    model: Value


@record(eq=False)
class ClassOutput(Event):
    """What a layer's `call` (or a `tf.Module`'s `__call__`) returns (`node`: the method)."""

    cls: str
    result: Value


@record(eq=False)
class Escape(Event):
    """A value a layer's `call` keeps beyond its return (`self.add_loss`, `self.x = ...`): it may reach a loss.

    `scope` is the class whose `call` it runs under, once known."""

    value: Value
    scope: str | None = None
    via: str | None = None  # the method it was handed to (`add_loss`), or None for a store


@record(eq=False)
class Untracked(Event):
    """A function handed to an operation (`tf.map_fn(lambda t: self.proj(t), x)`) whose body is not followed."""

    scope: str | None = None


@record
class LostCut:
    cut: Cut
    lost: frozenset
    sink: ast.AST  # gradient call, fit call, or the `call` method whose output loses it
    sink_kind: str  # gradient | fit | call
