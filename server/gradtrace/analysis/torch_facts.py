"""What the PyTorch value flow concludes: which cut leaves which trainable thing without gradient."""

from __future__ import annotations

from functools import cached_property

from gradtrace.analysis.core.interpreter import Interpreter
from gradtrace.analysis.core.values import alive_in, display, is_symbolic, overlaps
from gradtrace.analysis.frameworks.common import FROZEN_NAME_HINTS
from gradtrace.analysis.frameworks.torch.events import DeadCut, Sink
from gradtrace.analysis.frameworks.torch.plugin import TorchPlugin
from gradtrace.analysis.modules import ModuleContext
from gradtrace.records import field, record

# Leaving tensor land on the path is wrong even when another path still carries some gradient.
PARTIAL_KINDS = ("item", "math", "numpy", "rewrap")


@record
class TorchFacts:
    flow: TorchPlugin  # the PyTorch plug-in of the run: its events and tables
    module: ModuleContext
    interp: Interpreter | None = None
    dead: list[DeadCut] = field(default_factory=list)

    @cached_property
    def training_sinks(self) -> list[Sink]:
        return [s for s in self.flow.sinks if s.kind != "output"]

    @cached_property
    def alive(self) -> frozenset[str]:
        """Every source that reaches some training sink without a cut."""
        result: set[str] = set()
        for sink in self.training_sinks:
            result |= sink.value.srcs
        return frozenset(result)

    def dead_cuts(self, *kinds: str) -> list[DeadCut]:
        return [d for d in self.dead if d.cut.kind in kinds]

    def carries_training(self, source: str) -> bool:
        """Does gradient reaching `source` train something? (A layer or parameter does; a scratch tensor
        made with `requires_grad=True` that no optimizer holds, such as a zero to add losses to, does not.)"""
        kind = self.flow.source_kind.get(source) or self.flow.source_kind.get(source.split(".")[0])
        if kind in ("leaf", "releaf") and "." not in source:
            return self.should_train(source) == "yes"
        return True

    def should_train(self, source: str) -> str:
        """'yes' | 'maybe' | 'no': is `source` meant to get a gradient?"""
        flow = self.flow
        if is_symbolic(source):
            return "no"  # a helper's argument that no call resolved: nothing known to train
        if flow.source_kind.get(source) == "saved":
            return "yes"  # an input of a custom Function: its gradient is what the Function's backward owes
        for freeze in flow.freezes:
            if freeze.frozen and not freeze.conditional and any(overlaps(source, s) for s in freeze.srcs):
                if not any(not f.frozen and any(overlaps(source, s) for s in f.srcs) for f in flow.freezes):
                    return "no"
        known = [o for o in flow.optimizers if o.known]
        unknown = [o for o in flow.optimizers if not o.known]
        if any(alive_in(source, o.coverage.srcs) for o in known):
            return "yes"
        if known and not unknown:
            return "no"
        if unknown:
            return "maybe"
        last = display(source).split(".")[-1].lower()
        whole = display(source).lower()
        if any(h in whole for h in FROZEN_NAME_HINTS) or last in ("target", "teacher"):
            return "no"
        kind = flow.source_kind.get(source) or flow.source_kind.get(source.split(".")[0])
        if kind == "param":
            return "maybe"
        return "yes"


@record
class DeadTerm:
    """A summand of a loss that carries no gradient: what it was computed from was cut on its way."""

    sink: Sink
    node: object  # the summand's expression
    cut: object  # the cut that disconnected it (the first one that lost something that trains)
    lost: list


def dead_terms(facts: TorchFacts) -> list[DeadTerm]:
    """Summands of a differentiated loss that no trainable value reaches, while what they were computed
    from should train — their weight in the loss does nothing (other summands may still train the model)."""
    found: dict = {}
    for sink in facts.training_sinks:
        for node, srcs, cuts in sink.value.terms:
            if any(facts.carries_training(s) for s in srcs):
                continue  # the summand still carries gradient from something that trains
            for c in cuts:
                if c.kind in ("compare", "index") and not c.lost - srcs:
                    continue
                lost = sorted(s for s in c.lost if not s.startswith("<") and facts.should_train(s) == "yes")
                if lost:
                    found.setdefault((id(node), id(c.node)), DeadTerm(sink, node, c, lost))
                    break
    return list(found.values())


def compute_dead(facts: TorchFacts) -> None:
    by_cut: dict[int, DeadCut] = {}
    alive = facts.alive
    for sink in facts.flow.sinks:
        # what another path reaches with a zero gradient (`log_prob` of its own `rsample()`, `round`): that cut is
        # the one to report, not a cut on a path beside it (`reward(actions.detach())`)
        zeroed = frozenset().union(*(c.lost for c in sink.value.cuts if c.zero))
        for c in sink.value.cuts:
            # A source another training step still reaches is cut on purpose here (GAN, actor-critic),
            # except when grad mode was switched off for the whole process.
            reference = sink.value.srcs if sink.kind == "output" or c.kind == "grad_disabled" else alive
            lost = sorted(s for s in c.lost if not alive_in(s, reference) and not s.startswith("<"))
            partial = False
            if not lost and c.kind in PARTIAL_KINDS:
                lost = sorted(s for s in c.lost if not s.startswith("<"))
                partial = True
            if not lost:
                continue
            if zeroed and not c.zero and all(s in zeroed for s in lost):
                continue
            verdicts = {s: facts.should_train(s) for s in lost}
            lost = [s for s in lost if verdicts[s] != "no"]
            if not lost:
                continue
            severity = "warning" if any(verdicts[s] == "yes" for s in lost) and not partial else "information"
            if sink.kind == "output" and not facts.training_sinks:
                # a module's forward in a file that trains nothing: what it cuts matters only to whoever
                # trains it (a quantizer, an inference-only port), so say it, quietly
                severity = "information"
            raises = sink.kind != "output" and not sink.value.srcs and not sink.value.opaque
            existing = by_cut.get(c)
            if existing is None:
                by_cut[c] = DeadCut(c, lost, severity, sink, raises, partial)
            else:
                existing.lost = sorted(set(existing.lost) | set(lost))
                if severity == "warning":
                    existing.severity = "warning"
                if sink.kind != "output" and existing.sink.kind == "output":
                    existing.sink = sink
                    existing.raises = raises
    # Several cuts of the same kind at the same place (loop passes, one layer class used twice): one report
    # naming everything they cut.
    seen: dict[tuple, DeadCut] = {}
    for dead in by_cut.values():
        key = (id(dead.cut.node), dead.cut.kind)
        first = seen.get(key)
        if first is None:
            seen[key] = dead
            facts.dead.append(dead)
            continue
        first.lost = sorted(set(first.lost) | set(dead.lost))
        if dead.severity == "warning":
            first.severity = "warning"


def analyze_torch(ctx) -> TorchFacts:
    analysis = ctx.analysis_with("torch")  # the file's one run, shared with the other frameworks' plug-ins
    flow = analysis.plugin("torch")
    interp = analysis.run
    flow.name_placeholders()
    flow.incomplete = interp.incomplete
    flow.error = interp.error
    facts = TorchFacts(flow, analysis.module, interp)
    compute_dead(facts)
    return facts
