"""Hover: the fix and the reason behind a diagnostic, the gradient lens on any value, the rule named in a
`# noqa: GTxxx`, the last probe result.

A diagnostic's hover leads with the fix (the quick fix's title, and the rule's Example -> Use instead as
a diff), then one sentence of why, then a link to the rule; it does not repeat the diagnostic's message,
which the editor shows above it. All text comes from the rules' own documentation (`Rule.section`) and
the probe's JSON; the lens lines (what the value under the cursor carries gradient from, what cut it) come
after them, from the analysis's lens (`lsp/lens.py`); nothing is analysed here.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
import textwrap
import time
from typing import TYPE_CHECKING

from lsprotocol import types

from gradtrace import parsing
from gradtrace.analysis.suppressions import code_at
from gradtrace.lsp import lens
from gradtrace.positions import lsp_to_point, span_to_lsp, split_lines
from gradtrace.rules import get_rule

if TYPE_CHECKING:
    from gradtrace.findings import Finding
    from gradtrace.lsp.server import GradtraceServer

DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.(?:[A-Za-z_]\w*|\d+))*")
CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.S)
SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z`(\"]|$)")
MAX_PROBE_ROWS = 10
MAX_REASON_CHARS = 220
SHORT_SENTENCE = 90
SIMILAR = 0.6  # difflib ratio above which two example lines are one line changed


def rule_link(rule) -> str:
    try:
        return f"[{rule.code} {rule.name}]({rule().url})"
    except Exception:
        return f"`{rule.code}` {rule.name}"


def rule_summary(code: str) -> str | None:
    rule = get_rule(code)
    if rule is None:
        return None
    return f"**{rule.code}** `{rule.name}` ({rule.severity})\n\n{rule.summary}\n\n{rule_link(rule)}"


def example_diff(rule) -> str | None:
    """The rule's Example -> Use instead change as a diff: the changed lines, with as much context as the
    two sides need to compile at the indentation they are shown at (so that a moved or re-indented line
    reads as what it is, not as "replace the loop")."""
    before, after = _code(rule, "Example"), _code(rule, "Use instead")
    if not before or not after:
        return None
    opcodes = difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes()
    if not any(tag == "equal" for tag, *_ in opcodes) and len(after) < len(before):
        return _fragment_diff(before, after)  # "Use instead" shows only the new statements
    changes = [op for op in opcodes if op[0] != "equal"]
    shown = {line.strip() for line in after}
    # whole statements the Example has before (or after) everything "Use instead" shows are context it
    # left out, unless they reappear in it (a moved line)
    while len(changes) > 1 and _left_out(changes[0], before, shown, at_start=True):
        changes.pop(0)
    while len(changes) > 1 and _left_out(changes[-1], before, shown, at_start=False, end=len(after)):
        changes.pop()
    i0, j0, i1, j1 = changes[0][1], changes[0][3], changes[-1][2], changes[-1][4]
    i1 = _trim_left_out_tail(before, after, i0, i1)
    if i0 == i1 or j0 == j1:  # only lines added (or removed): show where
        if i0 > 0 and j0 > 0:
            i0, j0 = i0 - 1, j0 - 1
        elif i1 < len(before) and j1 < len(after):
            i1, j1 = i1 + 1, j1 + 1
    while not _both_compile(before[i0:i1], after[j0:j1]):
        if i1 < len(before) and j1 < len(after) and before[i1] == after[j1]:  # the next line is context
            i1, j1 = i1 + 1, j1 + 1
        elif i0 > 0 and j0 > 0 and before[i0 - 1] == after[j0 - 1]:
            i0, j0 = i0 - 1, j0 - 1
        else:
            break
    lines = []
    for tag, a0, a1, b0, b1 in difflib.SequenceMatcher(a=before[i0:i1], b=after[j0:j1], autojunk=False).get_opcodes():
        if tag == "equal":
            lines += [" " + line for line in before[i0 + a0:i0 + a1]]
        else:
            lines += ["-" + line for line in before[i0 + a0:i0 + a1]]
            lines += ["+" + line for line in after[j0 + b0:j0 + b1]]
    margin = min(len(line) - len(line[1:].lstrip()) - 1 for line in lines)
    return _diff_block([line[0] + line[1 + margin:] for line in lines])


def _left_out(change: tuple, before: list[str], shown: set[str], at_start: bool, end: int = 0) -> bool:
    tag, a0, a1, b0, b1 = change
    at_edge = b0 == 0 if at_start else b1 == end
    deleted = before[a0:a1]
    return (tag == "delete" and at_edge and _compiles(deleted)
            and not any(line.strip() in shown for line in deleted))


def _trim_left_out_tail(before: list[str], after: list[str], i0: int, i1: int) -> int:
    """Drop the changed Example lines at the end, outside the block the change starts in, that resemble
    nothing in "Use instead": a call after the block that it simply did not repeat."""
    depth = _indent(before[i0])
    while i1 - 1 > i0 and _indent(before[i1 - 1]) < depth and _compiles(before[i1 - 1:i1]) and not any(
            difflib.SequenceMatcher(a=before[i1 - 1].strip(), b=line.strip()).ratio() > SIMILAR for line in after):
        i1 -= 1
    return i1


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _fragment_diff(before: list[str], after: list[str]) -> str:
    """"Use instead" shows only the new statements: set them against the Example's most similar lines."""
    new_text = " ".join(line.strip() for line in after)

    def similarity(window: tuple[int, int]) -> float:
        old_text = " ".join(line.strip() for line in before[window[0]:window[1]])
        return difflib.SequenceMatcher(a=old_text, b=new_text, autojunk=False).ratio()

    windows = [(a, b) for a in range(len(before)) for b in range(a + 1, len(before) + 1)
               if _compiles(before[a:b], fragment=True)]
    start, stop = max(windows, key=similarity) if windows else (0, len(before))
    while start > 0 and _feeds_only(before[start - 1], before[start:stop], before[stop:] + after):
        start -= 1  # `arr = np.clip(...)` feeds only the replaced `h = torch.from_numpy(arr)`: replaced too
    old = textwrap.dedent("\n".join(before[start:stop])).splitlines()
    new = textwrap.dedent("\n".join(after)).splitlines()
    return _diff_block(["-" + line for line in old] + ["+" + line for line in new])


def _feeds_only(line: str, window: list[str], rest: list[str]) -> bool:
    """Whether `line` is an assignment whose names are read in `window` and nowhere in `rest`."""
    try:
        tree = parsing.parse(line.strip())
    except SyntaxError:
        return False
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assign):
        return False
    names = {n.id for target in tree.body[0].targets for n in ast.walk(target) if isinstance(n, ast.Name)}
    def reads(lines: list[str]) -> set[str]:
        return {m.group(0) for text in lines for m in re.finditer(r"[A-Za-z_]\w*", text)}
    return bool(names) and names <= reads(window) and not names & reads(rest)


def _diff_block(lines: list[str]) -> str:
    return "```diff\n" + "\n".join(lines) + "\n```"


def _both_compile(old: list[str], new: list[str]) -> bool:
    """Both sides compile once the indentation they share is removed (not each its own)."""
    margin = min((len(line) - len(line.lstrip()) for line in old + new if line.strip()), default=0)
    return _compiles([line[margin:] for line in old], dedent=False) and \
        _compiles([line[margin:] for line in new], dedent=False)


def _code(rule, title: str) -> list[str]:
    section = rule.section(title)
    block = CODE_BLOCK.search(section)
    text = textwrap.dedent(block.group(1) if block else "")
    return [line for line in text.splitlines() if line.strip()]


def _compiles(lines: list[str], dedent: bool = True, fragment: bool = False) -> bool:
    """Whether the lines compile on their own; a `fragment` may be a `return` or `break` out of context."""
    text = "\n".join(lines)
    text = (textwrap.dedent(text) if dedent else text) + "\n"
    try:
        parsing.parse(text) if fragment else compile(text, "<example>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def first_sentence(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """The first sentence (two when the first is short) of a section's first paragraph, cut at a word near
    `limit`."""
    paragraph = " ".join(text.split("\n\n")[0].split())
    ends = [m.start() + 1 for m in SENTENCE_END.finditer(paragraph)] or [len(paragraph)]
    sentence = paragraph[:ends[0]]
    if len(sentence) < SHORT_SENTENCE and len(ends) > 1 and ends[1] <= limit:
        sentence = paragraph[:ends[1]]  # a short first sentence: take the next one too
    if len(sentence) > limit:
        sentence = sentence[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " …"
    return sentence


def finding_markdown(finding: Finding, probe: bool = False) -> str:
    """The hover of a finding: the fix first, then why, then the rule. The message is not repeated: the
    editor shows it right above."""
    rule = get_rule(finding.code)
    parts = []
    if finding.fix is not None:
        parts.append(f"**Fix:** {finding.fix.title}" + (" (quick fix)" if finding.fix.safe
                                                           else " (quick fix; not safe: review the change)"))
    diff = example_diff(rule) if rule is not None else None
    if diff:
        parts.append(diff if parts else "**Fix:**\n" + diff)
    why = first_sentence(rule.section("Why is this bad?")) if rule is not None else ""
    if why:
        parts.append(f"**Why:** {why}")
    footer = rule_link(rule) if rule is not None else f"`{finding.code}`"
    if probe:
        footer += " · found by the gradtrace probe"
    parts.append(footer)
    return "\n\n".join(p for p in parts if p)


def _contains(rng: types.Range, pos: types.Position) -> bool:
    start, end = (rng.start.line, rng.start.character), (rng.end.line, rng.end.character)
    return start <= (pos.line, pos.character) <= end


def dotted_at(line_text: str, char_col: int) -> str | None:
    """The dotted name up to the segment under the cursor: hovering `enc` in `self.enc.weight` -> `self.enc`."""
    for match in DOTTED.finditer(line_text):
        if match.start() <= char_col <= match.end():
            text = match.group(0)
            rel = char_col - match.start()
            end = text.find(".", rel)
            return text if end < 0 else text[:end]
    return None


def probe_markdown(ls: GradtraceServer, path: str, line: int, name: str | None) -> str | None:
    """The last probe results for the parameters `name` refers to (or that are defined on `line`)."""
    entries = ls.probe.parameters.get(path) or []
    if not entries:
        return None
    wanted = name[5:] if name and name.startswith("self.") else name
    rows = []
    for param, record in entries:
        pname = str(param.get("name", ""))
        hit = False
        if wanted:
            hit = (pname == wanted or pname.startswith(wanted + ".") or pname.endswith("." + wanted)
                   or f".{wanted}." in f".{pname}.")
        where = param.get("defined_at") or {}
        if not hit and where.get("line") == line and where.get("path") and \
                os.path.abspath(where["path"]) == path and wanted and wanted.split(".")[-1] in pname.split("."):
            hit = True
        if hit and (param, record) not in rows:
            rows.append((param, record))
    if not rows:
        return None
    record = rows[0][1]
    stamp = time.strftime("%H:%M:%S", time.localtime(record.when))
    out = [f"**gradtrace probe** ({record.result.get('status', '?')}, {stamp})", "",
           "| parameter | gradient | norm | cut |", "|---|---|---|---|"]
    for param, _ in rows[:MAX_PROBE_ROWS]:
        grad = param.get("grad", "?")
        norm = param.get("norm")
        norm_text = f"{norm:.3g}" if isinstance(norm, (int, float)) else "–"
        cut = param.get("cut") or {}
        cut_text = "–"
        if cut:
            loc = f"{os.path.basename(str(cut.get('path', '')))}:{cut.get('line', '?')}"
            cut_text = f"`{cut.get('op', '?')}` at {loc}" + (f": {cut['reason']}" if cut.get("reason") else "")
        shown = grad if grad == "ok" else f"**{grad}**"
        out.append(f"| `{param.get('name')}` | {shown} | {norm_text} | {cut_text} |")
    if len(rows) > MAX_PROBE_ROWS:
        out.append(f"\n… and {len(rows) - MAX_PROBE_ROWS} more")
    return "\n".join(out)


async def hover(ls: GradtraceServer, params: types.HoverParams) -> types.Hover | None:
    """LSP handler for textDocument/hover."""
    uri = params.text_document.uri
    try:
        lines = split_lines(ls.workspace.get_text_document(uri).source)  # pygls reads unopened URIs from disk
    except Exception:
        return None
    pos = params.position
    if pos.line >= len(lines):
        return None
    line_no, col = lsp_to_point(lines, pos.line, pos.character, ls.encoding)
    text = lines[pos.line]

    noqa = code_at(text, col - 1)
    if noqa:
        code, start, end = noqa
        summary = rule_summary(code) or f"`{code}` is not a gradtrace rule."
        return _hover(summary, lines, pos.line, start, end - start, ls.encoding)

    docs = ls.documents
    key = docs.target_key(uri)
    parts = []
    value = None
    analysis = docs.analyses.get(key)
    if analysis is None and key in docs.targets:
        analysis = await docs.ensure(key)  # first hover before any analysis: wait for it once
    path = docs.path_for(key)
    if analysis is not None:
        # Never wait for a newer analysis (hovers stay instant while typing); the last one is used
        # where the hovered line is unchanged since it ran.
        current = analysis.version == docs.wanted_version(key) or _same_line(analysis, uri, pos.line, text)
        for diagnostic, finding in analysis.diagnostics.get(uri, []) + ls.probe.diagnostics(analysis, uri):
            if _contains(diagnostic.range, pos) and current:
                parts.append(finding_markdown(finding, probe=diagnostic.source != "gradtrace"))
        value = lens.value_at(analysis, uri, pos.line, col) if current else None
        if value is not None:  # after the finding's own hover
            parts.append(lens.lens_markdown(value, path))
    # cell lines -> notebook lines are not probed (the probe runs files), so only text documents here
    probe = probe_markdown(ls, path, line_no, dotted_at(text, col - 1)) if key == uri else None
    if probe:
        parts.append(probe)
    if not parts:
        return None
    # a hover that only describes the value spans that value
    rng = lens.value_range(value, lines, ls.encoding) if value is not None and len(parts) == 1 else None
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value="\n\n---\n\n".join(parts)),
                       range=rng)


def _same_line(analysis, uri: str, line0: int, text: str) -> bool:
    """Whether the analysed text had `text` on this (cell-relative) line too."""
    offset = next((first - 1 for first, _count, u in analysis.where.cells if u == uri), 0)
    index = offset + line0
    return 0 <= index < len(analysis.where.lines) and analysis.where.lines[index] == text


def _hover(value: str, lines: list[str], line0: int, start: int, length: int, encoding: str) -> types.Hover:
    rng = None
    if start >= 0:
        sl, sc, el, ec = span_to_lsp(lines, line0 + 1, start + 1, line0 + 1, start + length + 1, encoding)
        rng = types.Range(types.Position(sl, sc), types.Position(el, ec))
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=value), range=rng)


def register(server: GradtraceServer) -> None:
    server.feature(types.TEXT_DOCUMENT_HOVER)(hover)
