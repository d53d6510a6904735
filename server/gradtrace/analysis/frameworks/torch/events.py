"""What a PyTorch program does that the rules read: sinks, optimizers and steps, in-place writes, freezes."""

from __future__ import annotations

import ast

from gradtrace.analysis.core.frames import Event
from gradtrace.analysis.core.values import Cut, Value
from gradtrace.records import record

TYPE_CHECKING = False  # `typing` is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any


@record
class GradOff:
    """Gradient recording switched off: a `no_grad` block, a decorated helper, `set_grad_enabled(False)`."""

    node: ast.AST  # the `torch.no_grad()` call, the decorator, or `set_grad_enabled(False)`
    kind: str  # no_grad | no_grad_helper | grad_disabled
    op: str
    module: Any
    via: ast.AST | None = None
    sticky: bool = False  # a bare set_grad_enabled(False): outlives the function that called it


@record(eq=False)
class Sink(Event):
    """What is differentiated: `loss.backward()`, `autograd.grad(...)`, or a module's output."""

    value: Value
    kind: str  # backward | autograd.grad | output
    label: str  # what is differentiated, e.g. "loss"
    owner: Any = None  # for "output" sinks: the class whose forward returns it


@record(eq=False)
class Optimizer(Event):
    coverage: Value  # what it was given
    known: bool  # we know exactly which sources it holds
    var: str | None = None
    top: ast.stmt | None = None  # the module-level statement that built it (calls made from there)
    scope: object = None  # the function that built it (None: module level)
    non_leaf: Value | None = None  # a tensor it was given that autograd computed (torch raises ValueError)


@record(eq=False)
class Step(Event):
    optimizer: Value
    last_sink: Sink | None = None  # the most recent sink before it, in the program's order


@record(eq=False)
class InPlace(Event):
    target: Value
    var: str
    op: str
    grad_off: bool
    stmt: ast.stmt | None = None


@record(eq=False)
class Freeze(Event):
    srcs: frozenset
    frozen: bool
    conditional: bool
    sites: tuple = ()  # the calls that ran it, outermost first, when a helper did (`set_requires_grad(netD, False)`)


@record(eq=False)
class Surgery(Event):
    """A layer or model replaced after an optimizer was built over the old one's parameters."""

    target: str
    optimizer: Optimizer
    parameter: bool = False  # a parameter replaced, not a layer


@record(eq=False)
class NonLeafRequiresGrad(Event):
    var: str


@record(eq=False)
class Carried(Event):
    """A loop that hands a tensor with history from one iteration to the next."""

    names: list


@record(eq=False)
class StateCarried(Event):
    """A module's method keeps a tensor with history on `self` (`self.hidden = self.cell(x, self.hidden)`) that its
    next call reads back: the graph of one call reaches into the next. `node` is the store; `loop` the training
    loop (and `call` the call in it) that runs the method once per iteration, set where the call is in a loop."""

    attr: str
    owner: Any  # ClassInfo of the module
    loop: ast.stmt | None = None
    loop_module: Any = None
    call: ast.AST | None = None


@record(eq=False)
class Defined(Event):
    """Where a source is defined and what it is (recorded in the caller's names when it comes from a summary)."""

    names: frozenset
    kind: str | None = None  # param | leaf | module | attr | releaf


@record(eq=False)
class LayerReplaced(Event):
    """`obj.attr = <new layer>` on a module: a surgery when an optimizer already holds the old one."""

    owner: Value
    target: str
    parameter: bool = False


@record(eq=False)
class ModifiedBeforeBackward(Event):
    """An optimizer step or in-place write (`node`) on sources a graph had already saved, before that
    graph's `backward()` (`sink`): backward raises "modified by an inplace operation"."""

    sink: Sink
    srcs: frozenset  # the sources the graph saved and the step changed
    op: str  # what changed them, as written
    # set while it is only possible: a helper given both the model and the optimizer as arguments cannot tell
    # whether the optimizer holds the model; each call site decides, once the arguments are its own values
    optimizer: Value | None = None


@record(eq=False)
class IteratorUsedUp(Event):
    """An optimizer (`node`) built over a one-shot iterator (`made`: the assignment that stored it) that `first`
    already iterated: nothing is left, so it holds none of those parameters."""

    made: ast.stmt
    first: ast.AST
    whole: bool  # the iterator is all the optimizer was given (not one of its param groups)


@record(eq=False)
class GradsCleared(Event):
    """`optimizer.zero_grad()` / `model.zero_grad()`: the gradients of what `target` holds are cleared."""

    target: Value  # the optimizer or the module
    to_none: bool = True  # set to None (the default), not to zeros


@record(eq=False)
class GraphBuiltBeforeLoop(Event):
    """A `backward()` in a training loop (`node`) through a graph partly built before the loop: the second pass
    raises, the graph being freed (or, kept with `retain_graph=True`, changed in place by `step`)."""

    sink: Sink
    srcs: frozenset  # the sources that part of the graph reaches
    step: Step | None = None  # the step that changes them, when the graph is retained
    loop: ast.stmt | None = None
    names: tuple = ()  # the names, read in the loop before it writes them, that bring that graph in


@record(eq=False)
class LeafRebound(Event):
    """`w = w - lr * w.grad`: a name that held a trainable leaf now holds a tensor computed from it."""

    name: str
    grad_off: bool  # under no_grad: the new tensor does not require grad at all
    loop: object = None  # the innermost loop the rebinding runs in (None: not in a loop)
    reads_grad: bool = False  # the new value reads the leaf's `.grad` (a hand-written update)


@record(eq=False)
class ParameterReassigned(Event):
    """`self.w = <tensor>` where `w` is a registered parameter of an `nn.Module`: raises TypeError."""

    owner: object  # ClassInfo
    attr: str


@record(eq=False)
class LayerMadePerCall(Event):
    """A layer with parameters built inside a module's method (not `__init__`) and applied right there:
    new random weights on every call, registered nowhere, trained by no optimizer."""

    layer: str  # as written, e.g. "nn.Linear(D_in, H)"
    method: str


@record(eq=False)
class DeadCut:
    cut: Cut
    lost: list
    severity: str  # warning | information
    sink: Sink
    raises: bool = False  # nothing else reaches the sink: backward() raises
    partial: bool = False  # the source still gets part of its gradient through another path
