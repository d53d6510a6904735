"""What the JAX plug-in's run concludes, for the GT3xx rules: one entry per flagged place, in program order."""

from __future__ import annotations

import ast

from gradtrace.analysis.core.frames import FunctionRef
from gradtrace.analysis.frameworks.common import in_file
from gradtrace.analysis.frameworks.jax import events as ev
from gradtrace.analysis.frameworks.jax.plugin import JaxPlugin
from gradtrace.records import field, record


@record
class JaxFacts:
    plugin: JaxPlugin
    lost_cuts: dict = field(default_factory=dict)  # cut node -> LostCut (the sources it loses, merged)
    int_args: dict = field(default_factory=dict)  # node -> IntegerInput
    non_arrays: dict = field(default_factory=dict)  # argument node -> NotArrayInput
    conversions: dict = field(default_factory=dict)  # node -> Conversion
    control_flow: dict = field(default_factory=dict)  # condition node -> TracedCondition
    inplace: dict = field(default_factory=dict)  # statement -> ItemAssignment
    while_loops: dict = field(default_factory=dict)  # loop call -> ReverseLoop
    immutable: dict = field(default_factory=dict)  # apply call -> ImmutableCollection
    # grad call node -> [GradientsApplied]: the variables its gradients update (one per name and output)
    updates: dict = field(default_factory=dict)
    grad_calls: list = field(default_factory=list)  # Differentiated, one per call node
    nan_where: dict = field(default_factory=dict)  # singular sub-expression -> MaskedSingularity
    unread_leaves: dict = field(default_factory=dict)  # where the leaf was made -> UnreadLeaf
    grads_bound: dict = field(default_factory=dict)  # statement in a loop -> GradientsBound

    @property
    def transforms(self) -> list[ev.GradTransform]:
        return list(self.plugin.grad_transforms.values())

    def function_of(self, transform: ev.GradTransform) -> FunctionRef | None:
        """The function a transform differentiates, with the arguments bound to it (`self`, a partial's)."""
        return self.plugin.underlying(transform.fn)

    def function_named(self, name: str) -> ast.FunctionDef | None:
        return self.plugin.interp.root.functions.get(name)


def build_jax_facts(plugin: JaxPlugin) -> JaxFacts:
    facts = JaxFacts(plugin)
    local = in_file(plugin.interp.root.source)
    seen_calls: set = set()
    by_place = {ev.IntegerInput: facts.int_args, ev.NotArrayInput: facts.non_arrays, ev.Conversion: facts.conversions,
                ev.TracedCondition: facts.control_flow, ev.ItemAssignment: facts.inplace,
                ev.ReverseLoop: facts.while_loops, ev.ImmutableCollection: facts.immutable, ev.MaskedSingularity: facts.nan_where,
                ev.UnreadLeaf: facts.unread_leaves, ev.GradientsBound: facts.grads_bound}
    for event in plugin.interp.events:
        if not local(event.node):
            continue  # in a project module the file imports: reported there
        place = by_place.get(type(event))
        if place is not None:
            place.setdefault(event.node, event)
        elif isinstance(event, ev.LostCut):
            old = facts.lost_cuts.get(event.node)
            if old is None:
                facts.lost_cuts[event.node] = event
            else:
                old.lost = old.lost | event.lost
        elif isinstance(event, ev.GradientsApplied):
            updates = facts.updates.setdefault(event.gradients.call, [])
            if not any(u.name == event.name and u.gradients.index == event.gradients.index for u in updates):
                updates.append(event)
        elif isinstance(event, ev.Differentiated) and id(event.node) not in seen_calls:
            seen_calls.add(id(event.node))
            facts.grad_calls.append(event)
    return facts
