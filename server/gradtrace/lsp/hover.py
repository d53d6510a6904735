"""Hover: the rule behind a diagnostic, the rule named in a `# noqa: GTxxx`, the last probe result.

All text comes from the rules' own documentation (`Rule.section`) and the probe's JSON; nothing is
analysed here.
"""

from __future__ import annotations

import difflib
import os
import re
import time
from typing import TYPE_CHECKING

from lsprotocol import types

from gradtrace.analysis.suppressions import code_at
from gradtrace.positions import lsp_to_point, span_to_lsp, split_lines
from gradtrace.rules import get_rule

if TYPE_CHECKING:
    from gradtrace.findings import Finding
    from gradtrace.lsp.server import GradtraceServer

DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.(?:[A-Za-z_]\w*|\d+))*")
CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.S)
MAX_PROBE_ROWS = 10


def rule_link(rule) -> str:
    try:
        return f"[{rule.code} documentation]({rule().url})"
    except Exception:
        return ""


def rule_summary(code: str) -> str | None:
    rule = get_rule(code)
    if rule is None:
        return None
    return f"**{rule.code}** `{rule.name}` ({rule.severity})\n\n{rule.summary}\n\n{rule_link(rule)}".rstrip()


def before_after(rule) -> tuple[str, str] | None:
    """The first line that differs between the rule's Example and Use instead code."""
    def code(title: str) -> list[str]:
        block = CODE_BLOCK.search(rule.section(title))
        text = block.group(1) if block else rule.section(title)
        return [ln for ln in text.splitlines() if ln.strip()]

    before, after = code("Example"), code("Use instead")
    if not before or not after:
        return None
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for tag, i1, _i2, j1, _j2 in matcher.get_opcodes():
        if tag == "replace":
            return before[i1].strip(), after[j1].strip()
    return None


def finding_markdown(finding: Finding, probe: bool = False) -> str:
    rule = get_rule(finding.code)
    head = f"**{finding.code}**" + (f" `{rule.name}`" if rule else "") + f" ({finding.severity})"
    if probe:
        head += " · found by the gradtrace probe"
    parts = [head, finding.message]
    lost = finding.data.get("lost") if isinstance(finding.data, dict) else None
    if lost:
        names = ", ".join(f"`{n}`" for n in (lost if isinstance(lost, list) else [lost]))
        parts.append(f"Loses its gradient: {names}")
    if rule is not None:
        why = rule.section("Why is this bad?")
        if why:
            parts.append(why.split("\n\n")[0])
        pair = before_after(rule)
        if pair:
            parts.append(f"```python\n{pair[0]}  # before\n{pair[1]}  # after\n```")
    if finding.fix is not None:
        parts.append(f"Fix: {finding.fix.title}" + ("" if finding.fix.safe else " (review it: not a safe fix)"))
    if rule is not None:
        parts.append(rule_link(rule))
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
    analysis = docs.analyses.get(key)
    if analysis is None and key in docs.targets:
        analysis = await docs.ensure(key)  # first hover before any analysis: wait for it once
    if analysis is not None:
        # Never wait for a newer analysis (hovers stay instant while typing); the last one is used
        # where the hovered line is unchanged since it ran.
        fresh = analysis.version == docs.wanted_version(key)
        for diagnostic, finding in analysis.diagnostics.get(uri, []) + ls.probe.diagnostics(analysis, uri):
            if _contains(diagnostic.range, pos) and (fresh or _same_line(analysis, uri, pos.line, text)):
                parts.append(finding_markdown(finding, probe=diagnostic.source != "gradtrace"))
    path = docs.path_for(key)
    # cell lines -> notebook lines are not probed (the probe runs files), so only text documents here
    probe = probe_markdown(ls, path, line_no, dotted_at(text, col - 1)) if key == uri else None
    if probe:
        parts.append(probe)
    if not parts:
        return None
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value="\n\n---\n\n".join(parts)))


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
