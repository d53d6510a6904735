"""The gradient lens: what a value carries gradient from, what cut it, and what each loss reaches.

Read from the analysis already made for a document version (no second analysis): the interpreter records what
each name and expression of the file evaluated to (`Interpreter.observed`), and the sinks it saw. Hover, code
lens, inlay hints, `gradtrace explain` and the static gradient map all read these, so they never disagree.

`Lens(ctx).index()` is the compact, picklable form the language server receives with a document's findings: the
span of every observed value with an index into a table of what it carries (values that carry the same share a
row), the losses with what they reach, and the assignments whose value lost its gradient history on the way to a
loss (the inlay hints).
"""

from __future__ import annotations

import ast
import os
from array import array

from gradtrace.analysis.core.values import Value, display, overlaps
from gradtrace.records import asdict, field, record

NO_GRADIENT_KINDS = {"number": "a Python number: it has no autograd history",
                     "array": "a NumPy array: autograd does not follow NumPy"}
SHOWN_KINDS = ("tensor", "array", "number", "unknown")  # what a lens describes (not modules, optimizers, lists)
GRAD_OFF_KINDS = ("no_grad", "no_grad_helper", "grad_disabled", "function_backward")
EXPR_CHARS = 80
HINT_LABEL = "∅∇"


def module_of(name: str) -> str:
    """The module a source is grouped under: `model.encoder.0.weight` -> `model.encoder`."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else name


@record
class CutInfo:
    op: str  # as written, e.g. ".detach()"
    line: int
    path: str
    lost: list[str]  # what it disconnected (display names)
    zero: bool = False  # the gradient becomes zero rather than None
    kind: str = ""

    def where(self, path: str) -> str:
        """`on line 13`, and the file's name when it is not `path`."""
        return f"on line {self.line}" + ("" if self.path == path else f" of {os.path.basename(self.path)}")

    def sentence(self, path: str) -> str:
        """`lost: model.encoder — cut by `.detach()` on line 13` (what the CLI and the hover say)."""
        what = "zeroes" if self.zero else "cut"
        return f"lost: {', '.join(self.lost)} — {what} by `{self.op}` {self.where(path)}"


@record(slots=True)
class Carried:
    """What a value carries for autograd, wherever it is (one row shared by every value that carries the same)."""

    kind: str
    carries: tuple[str, ...]  # the trainable sources it carries gradient from
    cuts: tuple[CutInfo, ...]  # cuts on its way, and what each disconnected
    why_none: str | None  # when it carries nothing: why

    def key(self) -> tuple:
        return (self.kind, self.carries, self.why_none,
                tuple((c.op, c.line, c.path, tuple(c.lost), c.zero, c.kind) for c in self.cuts))


@record
class ValueFacts:
    """What one value carries for autograd."""

    expr: str
    line: int
    column: int
    end_line: int
    end_column: int
    kind: str
    carries: list[str] = field(default_factory=list)
    groups: dict = field(default_factory=dict)
    cuts: list[CutInfo] = field(default_factory=list)
    why_none: str | None = None

    def group_texts(self) -> list[str]:
        """One entry per module it carries gradient from: `model.encoder`, or `net (weight, bias)`."""
        out = []
        for group, members in sorted(self.groups.items()):
            inner = [m[len(group) + 1:] if m.startswith(group + ".") else m for m in members if m != group]
            out.append(group + (f" ({', '.join(inner)})" if inner else ""))
        return out

    def to_json(self) -> dict:
        return asdict(self)


@record
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
    defined: dict = field(default_factory=dict)  # module -> [path, line] where it is defined, when known

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

    @property
    def first_cut(self) -> CutInfo | None:
        """Where a click on the title goes: the cut of the first module it does not reach."""
        return next((cut for _name, cut in self.unreached if cut is not None), None)

    def to_json(self) -> dict:
        data = asdict(self)
        data["title"] = self.title
        data["unreached"] = [{"module": name, "cut": asdict(cut) if cut else None} for name, cut in self.unreached]
        return data


@record
class GradientHint:
    """An assignment whose value lost its gradient history on the way to a loss (an inlay hint after the name)."""

    line: int
    column: int  # just after the assigned name (1-based, code points)
    name: str
    cut: CutInfo
    loss_line: int

    label = HINT_LABEL

    def tooltip(self, path: str) -> str:
        what = "zeroed" if self.cut.zero else "cut"
        return (f"`{self.name}` carries no gradient: `{self.cut.op}` {self.cut.where(path)} {what} "
                f"{', '.join(self.cut.lost)} from it, on its way to the loss on line {self.loss_line}.")


@record
class LensIndex:
    """The lens of one analysed text, compact enough to send with its findings."""

    path: str
    # (line, column, end line, end column, row of `carried`) of each value, sorted, flat (compact: the server keeps
    # one per open document)
    values: array
    carried: list[Carried]
    sinks: list[SinkLens]
    hints: list[GradientHint]
    _by_line: dict | None = field(default=None, repr=False, compare=False)

    def __getstate__(self):
        return {**self.__dict__, "_by_line": None}

    def entries(self):
        """(line, column, end line, end column, row) of each value."""
        v = self.values
        return (tuple(v[i:i + 5]) for i in range(0, len(v), 5))

    def value_at(self, line: int, column: int, lines: list[str]) -> ValueFacts | None:
        """What the innermost value at (1-based line, 1-based column) carries; `lines` are the analysed text's."""
        best = None
        for entry in self._on_line(line):
            sl, sc, el, ec, _row = entry
            if (sl, sc) <= (line, column) <= (el, ec):
                size = (el - sl, ec - sc)
                if best is None or size < best[0]:
                    best = (size, entry)
        if best is None:
            return None
        sl, sc, el, ec, row = best[1]
        carried = self.carried[row]
        groups: dict = {}
        for name in carried.carries:
            groups.setdefault(module_of(name), []).append(name)
        return ValueFacts(_segment(lines, sl, sc, el, ec)[:EXPR_CHARS], sl, sc, el, ec, carried.kind,
                          list(carried.carries), groups, list(carried.cuts), carried.why_none)

    def _on_line(self, line: int) -> list:
        if self._by_line is None:  # built on the first hover of the document
            by_line: dict = {}
            for entry in self.entries():
                for n in range(entry[0], entry[2] + 1):
                    by_line.setdefault(n, []).append(entry)
            self._by_line = by_line
        return self._by_line.get(line, [])

    def named_lines(self) -> set[int]:
        """The lines of this file that its texts name (`cut at line 13`): an edit that moves them makes them wrong."""
        cuts = [c for row in self.carried for c in row.cuts] + [h.cut for h in self.hints]
        cuts += [cut for sink in self.sinks for _name, cut in sink.unreached if cut is not None]
        lines = {c.line for c in cuts if c.path == self.path} | {h.loss_line for h in self.hints}
        lines |= {line for sink in self.sinks for path, line in sink.defined.values() if path == self.path}
        return lines

    def relocated(self, move) -> LensIndex:
        """The same facts at the positions `move(line, column, end)` gives (after an edit of layout only);
        `move` raises when a position cannot be mapped."""
        values = []
        for sl, sc, el, ec, row in self.entries():
            (nsl, nsc), (nel, nec) = move(sl, sc), move(el, ec, True)
            values.append((nsl, nsc, nel, nec, row))
        sinks = []
        for s in self.sinks:
            (line, column), (end_line, end_column) = move(s.line, s.column), move(s.end_line, s.end_column, True)
            sinks.append(SinkLens(line, column, end_line, end_column, s.label, s.kind, s.reached, s.unreached,
                                  s.defined))
        hints = []
        for h in self.hints:
            line, column = move(h.line, h.column, True)
            hints.append(GradientHint(line, column, h.name, h.cut, h.loss_line))
        return LensIndex(self.path, flat(values), self.carried, sinks, hints)


def flat(entries: list[tuple]) -> array:
    return array("i", (n for entry in sorted(entries) for n in entry))


def _segment(lines: list[str], line: int, column: int, end_line: int, end_column: int) -> str:
    def text(n: int) -> str:
        return lines[n - 1] if 0 < n <= len(lines) else ""

    if line == end_line:
        return text(line)[column - 1:end_column - 1]
    return "\n".join([text(line)[column - 1:]] + [text(n) for n in range(line + 1, end_line)]
                     + [text(end_line)[:end_column - 1]])


class Lens:
    """The lens over one analysed document (`ctx.torch` facts)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.facts = ctx.torch if "torch" in ctx.source.frameworks else None
        interp = getattr(self.facts, "interp", None)
        self.observed = interp.observed if interp is not None else {}
        self.symbols = interp.symbol_names if interp is not None else {}
        self._index: LensIndex | None = None
        self._sink_cuts: dict | None = None
        self._cut_infos: dict = {}

    # ------------------------------------------------------------------ names
    def name(self, source: str) -> str:
        if source.startswith("$"):
            root, dot, rest = source.partition(".")
            source = self.symbols.get(root, "argument") + dot + rest
        return display(source)

    def names(self, sources) -> list[str]:
        return sorted({self.name(s) for s in sources if not s.startswith("<")})

    @staticmethod
    def cut_key(c) -> tuple:
        return (id(c.node), c.kind, c.op)

    def sink_cuts(self) -> dict:
        """cut -> (what it disconnected, named as the losses' values name it, the first loss's line). A cut
        inside a function loses `encoder` there and `model.encoder` in the loss of the caller."""
        if self._sink_cuts is None:
            found: dict = {}
            for sink in self.facts.training_sinks if self.facts is not None else []:
                if sink.module.path != self.ctx.path:
                    continue
                for c in sink.value.cuts:
                    lost, line = found.get(self.cut_key(c), (set(), sink.node.lineno))
                    found[self.cut_key(c)] = (lost | set(self.names(c.lost)), line)
            self._sink_cuts = found
        return self._sink_cuts

    def cut_info(self, c) -> CutInfo:
        key = (self.cut_key(c), c.lost)
        info = self._cut_infos.get(key)
        if info is None:  # one object per cut: the rows that share it share it when sent
            path = c.module.path if c.module is not None else self.ctx.path
            lost = self.sink_cuts().get(self.cut_key(c), (None, 0))[0] or self.names(c.lost)
            info = self._cut_infos[key] = CutInfo(c.op, c.line, path, sorted(lost), c.zero, c.kind)
        return info

    # ------------------------------------------------------------------ values
    def index(self) -> LensIndex:
        """Every observed value's span and what it carries, the losses and the inlay hints (computed once)."""
        if self._index is not None:
            return self._index
        values, carried, rows, by_value, by_id = [], [], {}, {}, {}
        span_of = self.ctx.source.span
        for node, value in self.observed.values():
            if value.kind not in SHOWN_KINDS:
                continue
            row = by_id.get(id(value))
            if row is None:
                same = (value.kind, value.srcs, value.cuts, value.dtype)  # all that `carried` reads
                row = by_value.get(same)
                if row is None:
                    facts = self.carried(value)
                    row = by_value[same] = rows.setdefault(facts.key(), len(carried))
                    if row == len(carried):
                        carried.append(facts)
                by_id[id(value)] = row
            span = span_of(node)
            values.append((span.line, span.column, span.end_line, span.end_column, row))
        self._index = LensIndex(self.ctx.path, flat(values), carried, self.sinks(), self.hints())
        return self._index

    def value_at(self, line: int, column: int) -> ValueFacts | None:
        """What the innermost observed name or expression at (1-based line, 1-based column) carries."""
        return self.index().value_at(line, column, self.ctx.source.lines.lines)

    def carried(self, value: Value) -> Carried:
        carries = tuple(self.names(value.srcs))
        cuts = tuple(self.cut_info(c) for c in value.cuts if c.lost)
        return Carried(value.kind, carries, cuts, None if carries else self.why_none(value))

    def why_none(self, value: Value) -> str:
        reason = ""
        if value.cuts:
            last = value.cuts[-1]  # the nearest: what cut the value itself, not one of its inputs
            if last.kind in GRAD_OFF_KINDS:
                reason = f"computed with gradients off (`{last.op}`, line {last.line})"
            else:
                reason = f"`{last.op}` on line {last.line} cut its history"
        if value.kind in NO_GRADIENT_KINDS:
            kind = NO_GRADIENT_KINDS[value.kind]
            return f"{kind.split(':')[0]} — {reason}" if reason else kind
        if reason:
            return reason
        if value.dtype in ("int", "bool"):
            return "an integer or boolean tensor: it cannot carry a gradient"
        return "computed only from data: no trainable value reaches it"

    # ------------------------------------------------------------------ inlay hints
    def hints(self) -> list[GradientHint]:
        """Assignments whose value carries nothing because a cut on the way to a loss removed its history."""
        out = []
        for node, value in self.observed.values():
            if not (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)) or value.srcs \
                    or value.kind not in SHOWN_KINDS:
                continue
            cut = next((c for c in reversed(value.cuts) if c.lost and self.cut_key(c) in self.sink_cuts()), None)
            if cut is None:
                continue
            span = self.ctx.source.span(node)
            out.append(GradientHint(span.end_line, span.end_column, node.id, self.cut_info(cut),
                                    self.sink_cuts()[self.cut_key(cut)][1]))
        return sorted(out, key=lambda h: (h.line, h.column))

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
            groups.setdefault(module_of(self.name(source)), set()).add(source)
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
        defined = {}
        for group in reached + [name for name, _cut in unreached]:
            where = next((flow.definitions[s] for s in sorted(groups[group]) if s in flow.definitions), None)
            if where is not None:
                node, module = where
                defined[group] = [module.path if module is not None else self.ctx.path, node.lineno]
        span = self.ctx.source.span(sink.node)
        return SinkLens(span.line, span.column, span.end_line, span.end_column, sink.label, sink.kind, reached,
                        unreached, defined)
