"""Pull diagnostics (`textDocument/diagnostic`), refresh on settings change, negotiated position encodings."""

from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from .helpers import (
    DATA,
    SERVER_CMD,
    SERVER_ENV,
    apply_text_edits,
    change_doc,
    make_client,
    open_doc,
    pull_capabilities,
    wait_until,
    workspace_edit_for,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
DETACH = (DATA / "detach.py").read_text(encoding="utf-8")
LINE = DETACH.splitlines()[6]
START_CP = LINE.index("encoder(x).detach()")
LENGTH = len("encoder(x).detach()")


def session(encodings):
    @pytest_lsp.fixture(
        scope="module",
        config=ClientServerConfig(server_command=SERVER_CMD, server_env=SERVER_ENV, client_factory=make_client),
    )
    async def fixture(lsp_client: LanguageClient):
        result = await lsp_client.initialize_session(
            types.InitializeParams(capabilities=pull_capabilities(encodings)))
        lsp_client.negotiated = result.capabilities.position_encoding  # type: ignore[attr-defined]
        yield
        await lsp_client.shutdown_session()

    return fixture


client = session(None)
utf8_client = session(["utf-8", "utf-16"])
utf32_client = session(["utf-32"])


async def pull(client, uri, previous=None):
    return await client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
        text_document=types.TextDocumentIdentifier(uri), previous_result_id=previous))


async def test_pull_report_and_unchanged_result_id(client, tmp_path):
    assert client.negotiated == "utf-16"
    uri = open_doc(client, tmp_path / "train.py", DETACH)
    report = await pull(client, uri)
    assert report.kind == "full"
    (d,) = report.items
    assert d.code == "GT105" and d.source == "gradtrace"
    assert d.range.start == types.Position(6, START_CP + 2)  # two astral characters: +1 UTF-16 unit each
    assert d.related_information and d.data["fix"]["safe"] is True
    again = await pull(client, uri, report.result_id)
    assert again.kind == "unchanged" and again.result_id == report.result_id
    change_doc(client, uri, 2, "\n" + DETACH)
    moved = await pull(client, uri, report.result_id)
    assert moved.kind == "full" and moved.items[0].range.start.line == 7
    await asyncio.sleep(0.3)
    assert uri not in client.diagnostics, "a pull client also got diagnostics pushed"


async def test_settings_change_refreshes_and_applies(client, tmp_path):
    uri = open_doc(client, tmp_path / "settings.py", DETACH)
    first = await pull(client, uri)
    assert [d.code for d in first.items] == ["GT105"]
    before = client.diagnostic_refresh_count
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"gradtrace": {"lint": {"ignore": ["GT105"]}}}))
    await wait_until(lambda: client.diagnostic_refresh_count > before, what="workspace/diagnostic/refresh")
    after = await pull(client, uri, first.result_id)
    assert after.kind == "full" and list(after.items) == []
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"gradtrace": {}}))
    await wait_until(lambda: client.diagnostic_refresh_count > before + 1, what="second refresh")
    assert [d.code for d in (await pull(client, uri)).items] == ["GT105"]


async def test_fix_all_resolved_lazily(client, tmp_path):
    uri = open_doc(client, tmp_path / "lazy.py", DETACH)
    report = await pull(client, uri)
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri), range=report.items[0].range,
        context=types.CodeActionContext(diagnostics=list(report.items))))
    fix_all = next(a for a in actions if a.kind == "source.fixAll.gradtrace")
    assert fix_all.edit is None  # this client resolves edits on demand
    resolved = await client.code_action_resolve_async(fix_all)
    fixed = apply_text_edits(DETACH, workspace_edit_for(resolved.edit, uri))
    assert ".detach()" not in fixed and fixed.count("\n") == DETACH.count("\n")


async def test_utf8_positions(utf8_client, tmp_path):
    assert utf8_client.negotiated == "utf-8"
    uri = open_doc(utf8_client, tmp_path / "utf8.py", DETACH)
    (d,) = (await pull(utf8_client, uri)).items
    start = len(LINE[:START_CP].encode("utf-8"))
    assert d.range.start == types.Position(6, start)
    assert d.range.end == types.Position(6, start + LENGTH)
    hover = await utf8_client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(6, start + 1)))
    assert "GT105" in hover.contents.value
    # one column before the finding, in bytes, is outside it
    before = await utf8_client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(6, start - 2)))
    assert before is None


async def test_utf32_positions(utf32_client, tmp_path):
    assert utf32_client.negotiated == "utf-32"
    uri = open_doc(utf32_client, tmp_path / "utf32.py", DETACH)
    (d,) = (await pull(utf32_client, uri)).items
    assert d.range.start == types.Position(6, START_CP)
    assert d.data["fix"]["edits"][0]["range"]["end"] == {"line": 6, "character": START_CP + LENGTH}
