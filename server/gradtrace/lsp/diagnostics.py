"""Finding -> LSP Diagnostic, and the push (`publishDiagnostics`) / pull (`textDocument/diagnostic`) handlers.

Every position goes through `gradtrace.positions` (code points -> the negotiated encoding). Each
diagnostic carries its fix, already in client units, in `data`, so code actions need no re-analysis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.uris import from_fs_path

from gradtrace.findings import Finding
from gradtrace.notebooks import locate
from gradtrace.positions import span_to_lsp
from gradtrace.records import field, record
from gradtrace.rules import get_rule

if TYPE_CHECKING:
    from gradtrace.lsp.server import GradtraceServer

SOURCE = "gradtrace"
PROBE_SOURCE = "gradtrace probe"
SOURCES = (SOURCE, PROBE_SOURCE)
SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "information": types.DiagnosticSeverity.Information,
    "hint": types.DiagnosticSeverity.Hint,
}


@record
class LineMap:
    """Where the lines of an analysed text live in the editor.

    A text document maps every line to itself; a notebook's concatenated cells map line ranges
    to cell URIs. `lines` are the analysed text's lines (identical to the cells' own lines).
    """

    uri: str
    path: str
    lines: list[str]
    # (first 1-based line in the analysed text, line count, cell uri); empty for a text document
    cells: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def uris(self) -> list[str]:
        return [c[2] for c in self.cells] if self.cells else [self.uri]

    def locate(self, line: int) -> tuple[str, int]:
        """1-based line in the analysed text -> (uri, 0-based line offset to subtract)."""
        return locate(self.cells, line, self.uri)

    def to_range(self, line: int, column: int, end_line: int, end_column: int, encoding: str):
        """A code-point span in the analysed text -> (uri, lsp Range); a span across cells is cut at its cell's end."""
        uri, offset = self.locate(line)
        if self.cells:
            end_uri, _ = self.locate(end_line)
            if end_uri != uri:
                first, count = next((f, c) for f, c, u in self.cells if u == uri)
                end_line = first + count - 1
                end_column = len(self.lines[end_line - 1]) + 1 if end_line - 1 < len(self.lines) else 1
        sl, sc, el, ec = span_to_lsp(self.lines, line, column, end_line, end_column, encoding)
        return uri, types.Range(types.Position(sl - offset, sc), types.Position(el - offset, ec))


def _range_json(r: types.Range) -> dict:
    return {"start": {"line": r.start.line, "character": r.start.character},
            "end": {"line": r.end.line, "character": r.end.character}}


def fix_data(finding: Finding, where: LineMap, encoding: str) -> dict | None:
    """The finding's fix as JSON-ready TextEdits per URI (client units)."""
    if finding.fix is None or not finding.fix.edits:
        return None
    edits = []
    for e in finding.fix.edits:
        uri, rng = where.to_range(e.line, e.column, e.end_line, e.end_column, encoding)
        edits.append({"uri": uri, "range": _range_json(rng), "newText": e.text})
    return {"title": finding.fix.title, "safe": finding.fix.safe, "edits": edits}


def to_diagnostic(
    finding: Finding,
    where: LineMap,
    encoding: str,
    *,
    version,
    related_support: bool = True,
    related_lines: Callable[[str], list[str] | None] | None = None,
    source: str = SOURCE,
) -> tuple[str, types.Diagnostic]:
    """One finding -> (uri it belongs to, Diagnostic)."""
    uri, rng = where.to_range(finding.line, finding.column, finding.end_line, finding.end_column, encoding)
    rule = get_rule(finding.code)
    href = None
    if rule is not None:
        try:
            href = types.CodeDescription(href=rule().url)
        except Exception:  # a rule without a documentation URL still gets its diagnostic
            href = None
    related: list[types.DiagnosticRelatedInformation] = []
    message = finding.message
    for r in finding.related:
        if r.path == where.path:
            r_uri, r_range = where.to_range(r.line, r.column, r.end_line, r.end_column, encoding)
        else:
            lines = related_lines(r.path) if related_lines else None
            r_uri = from_fs_path(r.path) or r.path
            if lines is not None:
                sl, sc, el, ec = span_to_lsp(lines, r.line, r.column, r.end_line, r.end_column, encoding)
            else:  # unreadable: code points are the best we know
                sl, sc, el, ec = r.line - 1, r.column - 1, r.end_line - 1, r.end_column - 1
            r_range = types.Range(types.Position(sl, sc), types.Position(el, max(ec, 0)))
        if related_support:
            related.append(types.DiagnosticRelatedInformation(types.Location(r_uri, r_range), r.message))
        else:
            message += f"\n{r.message} (line {r.line})"
    data = {"code": finding.code, "version": version, "fix": fix_data(finding, where, encoding)}
    if finding.data:
        data["facts"] = finding.data
    diagnostic = types.Diagnostic(
        range=rng,
        message=message,
        severity=SEVERITY.get(finding.severity, types.DiagnosticSeverity.Warning),
        code=finding.code,
        code_description=href,
        source=source,
        related_information=related or None,
        data=data,
    )
    return uri, diagnostic


# ---- handlers ---------------------------------------------------------------------------------


async def pull_diagnostics(ls: GradtraceServer, params: types.DocumentDiagnosticParams):
    """LSP handler for textDocument/diagnostic (pull)."""
    uri = params.text_document.uri
    report = await ls.documents.diagnostics_for_pull(uri)
    if report is None:
        return types.RelatedFullDocumentDiagnosticReport(items=[], result_id=None)
    result_id, items = report
    if params.previous_result_id is not None and params.previous_result_id == result_id:
        return types.RelatedUnchangedDocumentDiagnosticReport(result_id=result_id)
    return types.RelatedFullDocumentDiagnosticReport(items=items, result_id=result_id)


def register(server: GradtraceServer) -> None:
    server.feature(
        types.TEXT_DOCUMENT_DIAGNOSTIC,
        types.DiagnosticOptions(identifier=SOURCE, inter_file_dependencies=True, workspace_diagnostics=False),
    )(pull_diagnostics)
