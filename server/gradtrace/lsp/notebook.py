"""Notebooks: Python code cells analysed together, in cell order; findings mapped back to cells.

The concatenation and its analysis (magics, a syntax error kept to its cell) are `gradtrace.notebooks`,
shared with `gradtrace check`; here the cells come from the editor, keyed by their URIs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from gradtrace.lsp.diagnostics import LineMap
from gradtrace.notebooks import concatenate

if TYPE_CHECKING:
    from gradtrace.lsp.server import GradtraceServer


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
    cells = list(_python_cells(ls, nb))
    where = concatenate((cell_uri, doc.source) for cell_uri, doc in cells)
    versions = tuple((cell_uri, doc.version) for cell_uri, doc in cells)
    path = ls.documents.path_for(uri)
    return (nb.version, versions), where.text, LineMap(uri, path, where.lines, where.cells)


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
