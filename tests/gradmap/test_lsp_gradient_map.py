"""`gradtrace.gradientMap` through the real language server: the static map first, the probe's after a probe."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from tests.lsp.helpers import SERVER_CMD, SERVER_ENV, make_client, open_doc, wait_diagnostics

pytestmark = pytest.mark.asyncio(loop_scope="module")
DETACH = Path(__file__).resolve().parents[2] / "fixtures" / "torch" / "bad_detach.py"


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(
    server_command=SERVER_CMD, server_env=SERVER_ENV, client_factory=make_client))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(capabilities=client_capabilities("visual-studio-code")))
    yield
    await lsp_client.shutdown_session()


async def execute(client, command, *arguments):
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command=command, arguments=list(arguments)))


async def test_static_map_then_probe_map(client):
    uri = open_doc(client, DETACH)
    await wait_diagnostics(client, uri, version=1)
    static = await execute(client, "gradtrace.gradientMap", uri)
    assert static["source"] == "static" and "static analysis only" in static["title"]
    assert "✂ .detach() · line 15" in static["svg"]
    assert [v["name"] for v in static["index"].values() if v["kind"] == "param"] == ["model.encoder"]

    result = await execute(client, "gradtrace.probe", uri)
    assert result["status"] == "ok", result.get("error")
    probed = await execute(client, "gradtrace.gradientMap", {"uri": uri})
    assert probed["source"] == "probe" and probed["generation"] > static["generation"]
    dead = sorted(v["name"] for v in probed["index"].values() if v.get("status") == "none")
    assert dead == ["model.encoder.0.bias", "model.encoder.0.weight", "model.encoder.2.bias", "model.encoder.2.weight"]
    [cut] = [v for v in probed["index"].values() if v["kind"] == "cut"]
    assert (cut["line"], cut["path"]) == (15, str(DETACH))
    assert "--gt-bad" in probed["css"], probed["svg"]
    assert "✂ detach · line 15" in probed["svg"]


async def test_bad_argument_is_an_invalid_params_error(client):
    with pytest.raises(Exception, match="expects the document URI"):
        await execute(client, "gradtrace.gradientMap")


async def test_an_edit_makes_the_probe_result_stale_and_fixing_the_cut_clears_it(client):
    uri = open_doc(client, DETACH)
    text = DETACH.read_text(encoding="utf-8")
    result = await execute(client, "gradtrace.probe", uri)
    assert result["status"] == "ok", result.get("error")
    fresh = await execute(client, "gradtrace.gradientMap", uri)
    assert fresh["source"] == "probe" and fresh["stale"] is False and "stale" not in fresh["title"]

    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text + "# a note\n")]))
    diags = await wait_diagnostics(client, uri, version=2)
    probe = [d for d in diags if d.source == "gradtrace probe"]
    assert probe and all(d.message.startswith("stale probe result") for d in probe)
    stale = await execute(client, "gradtrace.gradientMap", uri)
    assert stale["stale"] is True and "stale" in stale["title"] and stale["notes"][0].startswith("Stale")

    # the cut (line 15) fixed: every probe finding it caused goes, the parameters' (line 10) too
    fixed = text.replace(".detach()", "")
    assert fixed != text
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=3),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=fixed)]))
    diags = await wait_diagnostics(client, uri, version=3)
    assert [d for d in diags if d.source == "gradtrace probe"] == []
