"""Text-document sync handlers: didOpen, didChange, didSave, didClose. They record what changed and hand
the document to the scheduler; nothing is analysed here."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from gradtrace.lsp.server import GradtraceServer

PYTHON_LANGUAGES = ("python", "")
PYTHON_SUFFIXES = (".py", ".pyi", ".pyw")


def is_python(language_id: str | None, uri: str) -> bool:
    """Clients send what their selector matched; a server attached to every buffer must not lint prose."""
    if language_id in PYTHON_LANGUAGES or language_id is None:
        return True
    return uri.split("?")[0].split("#")[0].endswith(PYTHON_SUFFIXES)


def did_open(ls: GradtraceServer, params: types.DidOpenTextDocumentParams) -> None:
    """LSP handler for textDocument/didOpen."""
    uri = params.text_document.uri
    docs = ls.documents
    if docs.target_key(uri) != uri:
        return  # a notebook cell: the notebook handlers own it
    if not is_python(params.text_document.language_id, uri):
        return
    docs.open_target(uri)
    ls.set_overlay(uri, params.text_document.text)
    if docs.on_save(uri):
        docs.targets[uri].pinned = (params.text_document.version, params.text_document.text)
    if not ls.pull_diagnostics:
        docs.schedule(uri, 0.0)
    docs.dependents_changed(uri)
    index_imports(ls, uri, params.text_document.text)


def index_imports(ls: GradtraceServer, uri: str, text: str) -> None:
    """Index the document's imports now, and the project modules they reach from disk in the background."""
    path = ls.documents.path_for(uri)
    index = ls.index_for(path)
    if index is None:
        return
    index.update(path, text)
    asyncio.get_running_loop().run_in_executor(None, index.follow, os.path.abspath(path))


def did_change(ls: GradtraceServer, params: types.DidChangeTextDocumentParams) -> None:
    """LSP handler for textDocument/didChange (pygls has applied the change already)."""
    uri = params.text_document.uri
    if uri not in ls.documents.targets:
        return
    try:
        ls.set_overlay(uri, ls.workspace.get_text_document(uri).source)
    except Exception:
        pass
    ls.documents.changed(uri)


def did_save(ls: GradtraceServer, params: types.DidSaveTextDocumentParams) -> None:
    """LSP handler for textDocument/didSave."""
    uri = params.text_document.uri
    docs = ls.documents
    if uri not in docs.targets:
        return
    if os.path.basename(docs.path_for(uri)) == "pyproject.toml":
        ls.config.forget_pyproject()
    pinned = docs.on_save(uri)
    if pinned:
        doc = ls.workspace.get_text_document(uri)
        docs.targets[uri].pinned = (doc.version, doc.source)
    docs.saved(uri, pull_again=pinned)


def did_close(ls: GradtraceServer, params: types.DidCloseTextDocumentParams) -> None:
    """LSP handler for textDocument/didClose."""
    uri = params.text_document.uri
    if uri in ls.documents.targets:
        ls.documents.close(uri)
        ls.set_overlay(uri, None)
        ls.documents.dependents_changed(uri)  # they read its text from disk again


def register(server: GradtraceServer) -> None:
    server.feature(types.TEXT_DOCUMENT_DID_OPEN)(did_open)
    server.feature(types.TEXT_DOCUMENT_DID_CHANGE)(did_change)
    server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))(did_save)
    server.feature(types.TEXT_DOCUMENT_DID_CLOSE)(did_close)
