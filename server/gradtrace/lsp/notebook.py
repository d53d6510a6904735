"""Notebooks: Python code cells analysed together, in cell order; findings mapped back to cells.

A model defined in one cell and trained in another is one program, so the cells are concatenated
(one line of the concatenation per cell line, so positions map back exactly). IPython magics and
shell escapes become `pass`; a cell magic (`%%bash`) blanks its cell. A syntax error in one cell
is reported there and that cell is left out, so the other cells keep their findings.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lsprotocol import types

from gradtrace.analysis.source import SourceFile
from gradtrace.engine import check_source, syntax_finding
from gradtrace.lsp.diagnostics import LineMap
from gradtrace.positions import split_lines

if TYPE_CHECKING:
    from gradtrace.lsp.server import GradtraceServer

MAGIC = re.compile(r"^(\s*)(%|!|\?)")
HELP_SUFFIX = re.compile(r"^(\s*)[\w.]+\?{1,2}\s*$")
MAX_BROKEN_CELLS = 8


def _python_cells(ls: GradtraceServer, nb: types.NotebookDocument):
    for cell in nb.cells:
        if cell.kind != types.NotebookCellKind.Code:
            continue
        try:
            doc = ls.workspace.get_text_document(cell.document)
        except Exception:
            continue
        if doc.language_id not in (None, "python"):
            continue
        yield cell.document, doc


def notebook_version(ls: GradtraceServer, uri: str):
    nb = ls.workspace.get_notebook_document(notebook_uri=uri)
    if nb is None:
        return None
    return (nb.version, tuple((u, d.version) for u, d in _python_cells(ls, nb)))


def build_notebook(ls: GradtraceServer, uri: str) -> tuple[object, str, LineMap] | None:
    """(version, concatenated text, line map) for the notebook at `uri`."""
    nb = ls.workspace.get_notebook_document(notebook_uri=uri)
    if nb is None:
        return None
    lines: list[str] = []
    cells: list[tuple[int, int, str]] = []
    versions = []
    for cell_uri, doc in _python_cells(ls, nb):
        cell_lines = split_lines(doc.source)
        if cell_lines and cell_lines[0].lstrip().startswith("%%"):
            cell_lines = [""] * len(cell_lines)  # a cell magic: not Python
        else:
            cell_lines = [_neutralise(line) for line in cell_lines]
        cells.append((len(lines) + 1, len(cell_lines), cell_uri))
        lines.extend(cell_lines)
        versions.append((cell_uri, doc.version))
    path = ls.documents.path_for(uri)
    return (nb.version, tuple(versions)), "\n".join(lines), LineMap(uri, path, lines, cells)


def _neutralise(line: str) -> str:
    match = MAGIC.match(line) or HELP_SUFFIX.match(line)
    if match:
        return match.group(1) + "pass"
    return line


def check_notebook(text: str, path: str, lint, project, where: LineMap):
    """Findings for the concatenated cells; a cell with a syntax error is reported and left out."""
    lines = list(where.lines)
    broken = []
    errors: list[str] = []
    source = SourceFile.parse(path, text)
    for _ in range(MAX_BROKEN_CELLS):
        if source.syntax_error is None:
            break
        finding = syntax_finding(source)
        broken.append(finding)
        uri, _offset = where.locate(finding.line)
        first, count = next(((f, c) for f, c, u in where.cells if u == uri), (finding.line, 1))
        for n in range(first - 1, first - 1 + count):
            lines[n] = ""
        source = SourceFile.parse(path, "\n".join(lines))
    else:
        return [f for f in broken if lint.enabled("GT000", path)], errors
    result = check_source(source.text, path, lint, project, source=source)
    findings = [f for f in broken if lint.enabled("GT000", path)] + result.findings
    return findings, result.errors


# ---- handlers ---------------------------------------------------------------------------------


def did_open(ls: GradtraceServer, params: types.DidOpenNotebookDocumentParams) -> None:
    """LSP handler for notebookDocument/didOpen."""
    uri = params.notebook_document.uri
    ls.documents.open_target(uri, notebook=True)
    if not ls.pull_diagnostics:
        ls.documents.schedule(uri, 0.0)


def did_change(ls: GradtraceServer, params: types.DidChangeNotebookDocumentParams) -> None:
    """LSP handler for notebookDocument/didChange (cells added, removed, moved or edited)."""
    uri = params.notebook_document.uri
    if uri in ls.documents.targets:
        ls.documents.changed(uri)


def did_save(ls: GradtraceServer, params: types.DidSaveNotebookDocumentParams) -> None:
    """LSP handler for notebookDocument/didSave."""
    if params.notebook_document.uri in ls.documents.targets:
        ls.documents.saved(params.notebook_document.uri, pull_again=True)


def did_close(ls: GradtraceServer, params: types.DidCloseNotebookDocumentParams) -> None:
    """LSP handler for notebookDocument/didClose."""
    ls.documents.close(params.notebook_document.uri)


NOTEBOOK_SYNC = types.NotebookDocumentSyncOptions(
    notebook_selector=[
        types.NotebookDocumentFilterWithCells(
            cells=[types.NotebookCellLanguage(language="python")],
            notebook="*",
        )
    ],
    save=True,
)


def register(server: GradtraceServer) -> None:
    server.feature(types.NOTEBOOK_DOCUMENT_DID_OPEN)(did_open)
    server.feature(types.NOTEBOOK_DOCUMENT_DID_CHANGE)(did_change)
    server.feature(types.NOTEBOOK_DOCUMENT_DID_SAVE)(did_save)
    server.feature(types.NOTEBOOK_DOCUMENT_DID_CLOSE)(did_close)
