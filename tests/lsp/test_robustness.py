"""Robustness: a crashing rule, a slow analysis, a 10 MB document, binary content, garbage edits."""

from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from .helpers import (
    DATA,
    SERVER_ENV,
    change_doc,
    make_client,
    open_doc,
    wait_diagnostics,
    wrapper_cmd,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
DETACH = (DATA / "detach.py").read_text(encoding="utf-8")


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(server_command=wrapper_cmd("hooked_server.py"), client_factory=make_client,
                              server_env={**SERVER_ENV, "GT_TEST_RULES": "1", "GT_TEST_SLOW": "2.5"}),
)
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(capabilities=client_capabilities("visual-studio-code")))
    yield
    await lsp_client.shutdown_session()


async def hover_at(client, uri, line, character):
    return await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(line, character)))


async def test_crash_inside_a_rule_is_logged_and_other_findings_kept(client, tmp_path):
    uri = open_doc(client, tmp_path / "crash.py", "# CRASH_ME\n" + DETACH)
    diags = await wait_diagnostics(client, uri, version=1)
    assert [d.code for d in diags] == ["GT105"]
    errors = [m.message for m in client.log_messages if m.type == types.MessageType.Error]
    assert any("GT998 crashed" in m and "boom from a test rule" in m for m in errors), errors
    # and the server keeps serving
    assert "GT105" in (await hover_at(client, uri, diags[0].range.start.line, diags[0].range.start.character)).contents.value


async def test_hover_answers_while_a_slow_analysis_runs(client, tmp_path):
    quick = open_doc(client, tmp_path / "quick.py", DETACH)
    diags = await wait_diagnostics(client, quick, version=1)
    slow = open_doc(client, tmp_path / "slow.py", "# SLOW_ME\n" + DETACH)
    await asyncio.sleep(0.3)  # the slow rule is now sleeping in the analysis pool
    hover = await asyncio.wait_for(hover_at(client, quick, diags[0].range.start.line, diags[0].range.start.character), 3)
    assert "GT105" in hover.contents.value
    assert slow not in client.diagnostics, "the slow analysis finished before the hover was answered"
    await wait_diagnostics(client, slow, version=1)


async def test_ten_megabyte_document(client, tmp_path):
    big = "import torch\n" + "x = torch.ones(3) * 2  # a long line of padding to make the file big......\n" * 135_000
    assert len(big) > 10_000_000
    uri = open_doc(client, tmp_path / "big.py", big)
    diags = await wait_diagnostics(client, uri, version=1)
    assert [d.code for d in diags] == ["GT001"]
    assert diags[0].severity == types.DiagnosticSeverity.Information
    assert "MB" in diags[0].message and "not analysed" in diags[0].message.lower()
    other = open_doc(client, tmp_path / "after_big.py", DETACH)
    assert [d.code for d in await wait_diagnostics(client, other, version=1)] == ["GT105"]


async def test_binary_content(client, tmp_path):
    uri = open_doc(client, tmp_path / "blob.py", "\x00\x01\x02torch\x00" * 100)
    diags = await wait_diagnostics(client, uri, version=1)
    assert [d.code for d in diags] == ["GT001"] and "binary" in diags[0].message


async def test_garbage_edits_never_break_the_server(client, tmp_path):
    uri = open_doc(client, tmp_path / "garbage.py", DETACH)
    await wait_diagnostics(client, uri, version=1)
    garbage = ["def (((", "import torch\nx = torch.zeros(3, require_grad=)", "\ud800 lone surrogate",
               "import torch\n" + "(" * 5000 + ")" * 5000, "import torch\nclass A(nn.Module):\n  def f(self):\n\treturn 1\n",
               "", "import torch\n'''unterminated"]
    for version, text in enumerate(garbage, start=2):
        change_doc(client, uri, version, text)
        await wait_diagnostics(client, uri, version=version)
    change_doc(client, uri, 99, DETACH)
    assert [d.code for d in await wait_diagnostics(client, uri, version=99)] == ["GT105"]


async def test_hover_does_not_wait_for_the_analysis_of_an_edit(client, tmp_path):
    uri = open_doc(client, tmp_path / "editing.py", DETACH)
    (d,) = await wait_diagnostics(client, uri, version=1)
    change_doc(client, uri, 2, DETACH + "# SLOW_ME\n")  # version 2 takes seconds to analyse
    await asyncio.sleep(0.3)
    hover = await asyncio.wait_for(hover_at(client, uri, d.range.start.line, d.range.start.character + 1), 2)
    assert "GT105" in hover.contents.value  # from the last analysis: that line has not changed
    assert [p.version for p in client.published if p.uri == uri] == [1]
    await wait_diagnostics(client, uri, version=2)


async def test_analysis_process_dying_is_reported_and_replaced(client, tmp_path):
    uri = open_doc(client, tmp_path / "killer.py", "# KILL_WORKER\n" + DETACH)
    diags = await wait_diagnostics(client, uri, version=1)
    assert [d.code for d in diags] == ["GT001"] and "crashed" in diags[0].message
    errors = [m.message for m in client.log_messages if m.type == types.MessageType.Error]
    assert any("crashed the analysis process" in m for m in errors), errors
    change_doc(client, uri, 2, DETACH)  # the next version is analysed by a new process
    assert [d.code for d in await wait_diagnostics(client, uri, version=2)] == ["GT105"]
    other = open_doc(client, tmp_path / "after_kill.py", DETACH)
    assert [d.code for d in await wait_diagnostics(client, other, version=1)] == ["GT105"]
