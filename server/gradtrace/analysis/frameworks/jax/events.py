"""What a JAX program does that the GT3xx rules read: transformed functions and the events of their traces.

Events recorded inside a function summary name its arguments symbolically and are renamed at each call
site (see `core.summaries`); the facts are built from the file's events once the run is over.
"""

from __future__ import annotations

import ast

from gradtrace.analysis.core.frames import Event
from gradtrace.analysis.core.values import EMPTY, Cut, Value
from gradtrace.records import field, record


@record(eq=False)
class GradTransform:
    """`jax.grad(f, argnums=...)` (or value_and_grad, jacrev, vjp...): what it differentiates."""

    fn: Value  # the function, partial or jitted function it transforms
    argnums: tuple | None  # None: not a constant
    mode: str  # grad | value_and_grad | jacrev | jacfwd | hessian | vjp
    node: ast.AST
    jit: bool = False  # also traced abstractly (`jax.jit(jax.grad(f))`, grad of a jitted function)
    has_aux: bool = False
    argnums_node: ast.AST | None = None
    static: frozenset = EMPTY  # static positions and names of the jit around it
    allow_int: bool = False
    filtered: bool = False  # equinox's filtered transforms: Python numbers in the arguments are static

    @property
    def label(self) -> str:
        return f"jax.{self.mode}" + (" under jax.jit" if self.jit else "")


@record(eq=False)
class TraceTransform:
    """`jax.jit(f)` / `vmap` / `pmap`: every non-static argument becomes an abstract tracer."""

    fn: Value
    mode: str  # jit | vmap | pmap
    node: ast.AST
    static: frozenset = EMPTY  # static positions and names (`ANY_STATIC` when not literal)
    filtered: bool = False  # `equinox.filter_jit`: only array arguments are traced, Python values stay static

    @property
    def label(self) -> str:
        return f"jax.{self.mode}"


@record(frozen=True)
class Gradients:
    """What a differentiated function returns: the gradients of one call, or one output of a tuple argnums."""

    transform: GradTransform
    call: ast.AST
    index: int | None = None


@record(eq=False)
class LostCut(Event):
    """A cut that disconnects differentiated arguments from the output of the differentiated function."""

    cut: Cut
    lost: frozenset
    transform: GradTransform


@record(eq=False)
class IntegerInput(Event):
    """An integer leaf of a differentiated argument (`node`: where it was made, else the argument)."""

    path: str
    transform: GradTransform
    call: ast.AST


@record(eq=False)
class NotArrayInput(Event):
    """A differentiated argument that is no JAX type (`node`: the argument): a flax linen module, a function."""

    what: str  # what was given, e.g. "`self.policy_network`, a flax linen `ActorCritic`"
    transform: GradTransform
    call: ast.AST


@record(eq=False)
class GradientsBound(Event):
    """Gradients bound to a name inside a loop (`node`: the statement): a training step's, unless never read."""

    name: str


@record(eq=False)
class UnreadLeaf(Event):
    """A leaf of a differentiated pytree the output never reads, beside leaves it does read (`node`: where the
    leaf was made, else the call)."""

    path: str  # `params['temperature']`
    key: str  # `temperature`
    function: ast.AST  # the differentiated function
    transform: GradTransform
    call: ast.AST


@record(eq=False)
class Conversion(Event):
    """A traced value turned into a Python or NumPy value (`float(x)`, `np.asarray(x)`, `.item()`)."""

    op: str
    severity: str  # error: raises under the trace | warning: silently a constant
    transform: str


@record(eq=False)
class TracedCondition(Event):
    """Python control flow on an abstract tracer (`node`: the condition)."""

    transform: str
    chained: bool = False  # `0 < h < 1`: Python asks for the truth of `0 < h` itself


@record(eq=False)
class ItemAssignment(Event):
    """`x[i] = v` on a JAX array (`node`: the statement)."""

    target: ast.Subscript


@record(eq=False)
class ImmutableCollection(Event):
    """A layer that updates a collection (`nn.BatchNorm` in training mode: `batch_stats`) run by an `apply`
    (`node`) not told that collection may change: flax raises ModifyScopeVariableError."""

    layer: str
    collection: str
    at: ast.AST  # the layer call
    missing: bool = False  # the variables given to `apply` have no such collection at all


@record(eq=False)
class ReverseLoop(Event):
    """`lax.while_loop`/`fori_loop` with a differentiated carry under reverse mode."""

    op: str


@record(eq=False)
class GradientsApplied(Event):
    """Gradients of `call` update the variable `name` (`node`: the update expression)."""

    name: str
    gradients: Gradients


@record(eq=False)
class Differentiated(Event):
    """A differentiated function called (`node`: the call); `result` is its output (None: not followed)."""

    transform: GradTransform
    result: Value | None = None


@record(eq=False)
class MaskedSingularity(Event):
    """`jnp.where(c, f(x), y)` with `f` singular at a point: the masked branch's gradient can be NaN.

    `node` is the singular sub-expression."""

    op: str
    where: ast.Call
    argument: ast.AST
    first: bool  # in the first branch of the `where`
    origins: frozenset = field(default=EMPTY)
    direct: bool = True  # the argument itself is differentiated (False: only a division's numerator)
