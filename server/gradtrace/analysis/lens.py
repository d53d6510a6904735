"""The gradient lens: what a value carries gradient from, what cut it, and what each loss reaches.

Read from the analysis already made for a document version (no second analysis): the interpreter records what
each name and expression of the file evaluated to (`Interpreter.observed`), and the sinks it saw. Hover, code
lens, inlay hints, `gradtrace explain` and the static gradient map all read these, so they never disagree.
"""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass, field

from gradtrace.analysis.core.values import Value, display, overlaps

NO_GRADIENT_KINDS = {"number": "a Python number: it has no autograd history",
                     "array": "a NumPy array: autograd does not follow NumPy"}


@dataclass
class CutInfo:
    op: str  # as written, e.g. ".detach()"
    line: int
    path: str
    lost: list[str]  # what it disconnected (display names)
    zero: bool = False  # the gradient becomes zero rather than None
    kind: str = ""


@dataclass
class ValueFacts:
    """What one value carries for autograd."""

    expr: str
    line: int
    column: int
    end_line: int
    end_column: int
    kind: str
    carries: list[str] = field(default_factory=list)  # the trainable sources it carries gradient from
    groups: dict = field(default_factory=dict)  # module -> its sources in `carries`
    cuts: list[CutInfo] = field(default_factory=list)  # cuts on its way, and what each disconnected
    why_none: str | None = None  # when it carries nothing: why

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class SinkLens:
    """What a differentiated loss (or optimizer step) reaches among what should train."""

    line: int
    column: int
    end_line: int
    end_column: int
    label: str
    kind: str  # backward | autograd.grad | step
    reached: list[str]
    unreached: list[tuple[str, CutInfo | None]]  # module and what cut it (None: nothing reaches it at all)

    @property
    def title(self) -> str:
        total = len(self.reached) + len(self.unreached)
        noun = "module" if total == 1 else "modules"
        if not self.unreached:
            return f"reaches all {total} {noun}" if total > 1 else (f"reaches {self.reached[0]}" if total else
                                                                       "reaches no trainable value")
        name, cut = self.unreached[0]
        why = f"cut at line {cut.line} ({cut.op})" if cut is not None else "not reached"
        more = f" (+{len(self.unreached) - 1} more)" if len(self.unreached) > 1 else ""
        return f"reaches {len(self.reached)} of {total} {noun} — {name}: {why}{more}"

    def to_json(self) -> dict:
        data = asdict(self)
        data["title"] = self.title
        data["unreached"] = [{"module": name, "cut": asdict(cut) if cut else None} for name, cut in self.unreached]
        return data


class Lens:
    """The lens over one analysed document (`ctx.torch` facts)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.facts = ctx.torch if "torch" in ctx.source.frameworks else None
        interp = getattr(self.facts, "interp", None)
        self.observed = interp.observed if interp is not None else {}
        self.symbols = interp.symbol_names if interp is not None else {}
        self._by_line: dict | None = None

    # ------------------------------------------------------------------ names
    def name(self, source: str) -> str:
        if source.startswith("$"):
            root, dot, rest = source.partition(".")
            source = self.symbols.get(root, "argument") + dot + rest
        return display(source)

    def names(self, sources) -> list[str]:
        return sorted({self.name(s) for s in sources if not s.startswith("<")})

    @staticmethod
    def group(name: str) -> str:
        parts = name.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 else name

    def cut_info(self, c) -> CutInfo:
        path = c.module.path if c.module is not None else self.ctx.path
        return CutInfo(c.op, c.line, path, self.names(c.lost), c.zero, c.kind)

    # ------------------------------------------------------------------ values
    def value_at(self, line: int, column: int) -> ValueFacts | None:
        """What the innermost observed name or expression at (1-based line, 1-based column) carries."""
        best = None
        for node, value in self.on_line(line):
            span = self.ctx.source.span(node)
            if (span.line, span.column) <= (line, column) <= (span.end_line, span.end_column):
                size = (span.end_line - span.line, span.end_column - span.column)
                if best is None or size < best[0]:
                    best = (size, node, value, span)
        if best is None:
            return None
        _, node, value, span = best
        return self.describe(node, value, span)

    def on_line(self, line: int) -> list:
        if self._by_line is None:
            self._by_line = {}
            for node, value in self.observed.values():
                for ln in range(node.lineno, (getattr(node, "end_lineno", None) or node.lineno) + 1):
                    self._by_line.setdefault(ln, []).append((node, value))
        return self._by_line.get(line, [])

    def describe(self, node: ast.AST, value: Value, span) -> ValueFacts:
        carries = self.names(value.srcs)
        groups: dict = {}
        for name in carries:
            groups.setdefault(self.group(name), []).append(name)
        cuts = [self.cut_info(c) for c in value.cuts if c.lost]
        facts = ValueFacts(self.ctx.source.segment(node)[:80], span.line, span.column, span.end_line, span.end_column,
                           value.kind, carries, groups, cuts)
        if not carries:
            facts.why_none = self.why_none(value)
        return facts

    def why_none(self, value: Value) -> str:
        grad_off = next((c for c in reversed(value.cuts) if c.kind in ("no_grad", "no_grad_helper", "grad_disabled")),
                        None)
        if grad_off is not None:
            return f"computed with gradients off (`{grad_off.op}`, line {grad_off.line})"
        if value.cuts:
            last = value.cuts[-1]
            return f"`{last.op}` on line {last.line} cut its history"
        if value.kind in NO_GRADIENT_KINDS:
            return NO_GRADIENT_KINDS[value.kind]
        if value.dtype in ("int", "bool"):
            return "an integer or boolean tensor: it cannot carry a gradient"
        return "computed only from data: no trainable value reaches it"

    # ------------------------------------------------------------------ losses
    def sinks(self) -> list[SinkLens]:
        if self.facts is None:
            return []
        out = []
        seen = set()
        for sink in self.facts.training_sinks:
            if sink.module.path != self.ctx.path or id(sink.node) in seen:
                continue
            seen.add(id(sink.node))
            out.append(self.sink_lens(sink))
        return out

    def sink_lens(self, sink) -> SinkLens:
        value = sink.value
        reached_sources = {s for s in value.srcs if not s.startswith("<")}
        universe = set(reached_sources)
        for c in value.cuts:
            universe |= {s for s in c.lost if not s.startswith("<")}
        flow = self.facts.flow
        for opt in flow.optimizers:  # the parts of a model an optimizer trains, as the analysis named them
            covered = opt.coverage.srcs
            if not any(overlaps(s, c) for s in universe for c in covered):
                continue
            for name in flow.definitions:
                if any(name.startswith(c + ".") for c in covered) and flow.source_kind.get(name) in ("module", "leaf"):
                    universe.add(name)
        groups: dict = {}
        for source in universe:
            groups.setdefault(self.group(self.name(source)), set()).add(source)
        # a group whose own sources are nested in another group's (`model` and `model.encoder`): keep the finer
        reached, unreached = [], []
        for group in sorted(groups):
            members = groups[group]
            if any(any(overlaps(m, r) for r in reached_sources) for m in members):
                reached.append(group)
                continue
            cut = next((c for c in value.cuts if any(overlaps(m, s) for m in members for s in c.lost)), None)
            unreached.append((group, self.cut_info(cut) if cut is not None else None))
        reached = [g for g in reached if not any(o != g and o.startswith(g + ".") for o in reached + [u for u, _ in unreached])]
        span = self.ctx.source.span(sink.node)
        return SinkLens(span.line, span.column, span.end_line, span.end_column, sink.label, sink.kind, reached,
                        unreached)
