"""Helpers for the language-server end-to-end tests (real server subprocess over stdio)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import LanguageClient
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
SERVER_ENV = {**os.environ, "PYTHONPATH": str(ROOT / "server") + os.pathsep + os.environ.get("PYTHONPATH", "")}
SERVER_CMD = [sys.executable, "-m", "gradtrace", "server"]
TIMEOUT = 20.0


def wrapper_cmd(name: str) -> list[str]:
    """A test server: `tests/lsp/data/<name>` patches something (a rule, the probe), then serves."""
    return [sys.executable, str(DATA / name)]


def make_client() -> LanguageClient:
    """pytest-lsp's client, also keeping every publishDiagnostics (with its version) in order."""
    client = LanguageClient(converter_factory=default_converter)
    client.published = []  # type: ignore[attr-defined]

    def publish(c: LanguageClient, params: types.PublishDiagnosticsParams):
        c.diagnostics[params.uri] = params.diagnostics
        c.published.append(params)  # type: ignore[attr-defined]

    client.registrations = []  # type: ignore[attr-defined]

    def register_capability(c: LanguageClient, params: types.RegistrationParams):
        c.registrations.extend(params.registrations)  # type: ignore[attr-defined]

    features = dict(DEFAULT_CLIENT_FEATURES)
    features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS] = publish
    features[types.CLIENT_REGISTER_CAPABILITY] = register_capability
    register_lsp_features(client, features)
    return client


async def wait_until(predicate, timeout: float = TIMEOUT, what: str = "condition"):
    """Poll `predicate` (cheap, client-side state) until true; fail with `what` after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_diagnostics(client: LanguageClient, uri: str, predicate=None, version=None, what=""):
    """The diagnostics published for `uri` (at `version`, when given) once `predicate(diags)` holds."""

    def ready():
        for params in reversed(client.published):
            if params.uri != uri:
                continue
            if version is not None and params.version != version:
                return None
            if predicate is None or predicate(params.diagnostics):
                return list(params.diagnostics) or True
            return None
        return None

    result = await wait_until(ready, what=what or f"diagnostics for {uri}")
    return [] if result is True else result


def open_doc(client: LanguageClient, path: Path, text: str | None = None, version: int = 1, language: str = "python"):
    if text is None:
        text = path.read_text(encoding="utf-8")
    else:
        path.write_text(text, encoding="utf-8")
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)))
    return uri


def change_doc(client: LanguageClient, uri: str, version: int, text: str, rng: types.Range | None = None):
    """A didChange: whole-document when `rng` is None, else an incremental replace of `rng`."""
    if rng is None:
        change = types.TextDocumentContentChangeWholeDocument(text=text)
    else:
        change = types.TextDocumentContentChangePartial(range=rng, text=text)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version), content_changes=[change]))


def pull_capabilities(encodings: list[str] | None = None, related: bool = True) -> types.ClientCapabilities:
    """What vscode-languageclient 9 advertises for diagnostics (pull + refresh), hand-built."""
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(position_encodings=encodings) if encodings else None,
        workspace=types.WorkspaceClientCapabilities(
            diagnostics=types.DiagnosticWorkspaceClientCapabilities(refresh_support=True),
            configuration=True,
            workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True),
        ),
        text_document=types.TextDocumentClientCapabilities(
            diagnostic=types.DiagnosticClientCapabilities(related_document_support=True,
                                                          related_information=related),
            publish_diagnostics=types.PublishDiagnosticsClientCapabilities(related_information=related),
            hover=types.HoverClientCapabilities(content_format=[types.MarkupKind.Markdown]),
            code_action=types.CodeActionClientCapabilities(
                resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"])),
        ),
        window=types.WindowClientCapabilities(work_done_progress=True),
    )


def apply_text_edits(text: str, edits: list[types.TextEdit]) -> str:
    """Apply LSP TextEdits (UTF-16 positions) to `text`, as an editor would."""
    lines = text.split("\n")

    def offset(pos: types.Position) -> int:
        base = sum(len(line) + 1 for line in lines[: pos.line])
        line = lines[pos.line] if pos.line < len(lines) else ""
        units = 0
        for index, ch in enumerate(line):
            if units >= pos.character:
                return base + index
            units += 2 if ord(ch) > 0xFFFF else 1
        return base + len(line)

    spans = sorted(((offset(e.range.start), offset(e.range.end), e.new_text) for e in edits), reverse=True)
    for start, end, new in spans:
        text = text[:start] + new + text[end:]
    return text


def workspace_edit_for(edit: types.WorkspaceEdit, uri: str) -> list[types.TextEdit]:
    if edit.document_changes:
        return [e for dc in edit.document_changes if dc.text_document.uri == uri for e in dc.edits]
    return list((edit.changes or {}).get(uri, []))
