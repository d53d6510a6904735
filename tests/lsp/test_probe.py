"""`gradtrace.probe` through the server: progress, settings passed on, diagnostics, hovers, cancellation.

The launcher is a fake with the launcher's contract (tests/lsp/data/hooked_server.py), so these tests
exercise the server's side of it; the probe's own tests cover the sandbox.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from .helpers import (
    DATA,
    SERVER_CMD,
    SERVER_ENV,
    change_doc,
    make_client,
    open_doc,
    pull_capabilities,
    wait_diagnostics,
    wait_until,
    wrapper_cmd,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
DETACH = (DATA / "detach.py").read_text(encoding="utf-8")
CUT_LINE = 6
LOG_DIR = Path(tempfile.mkdtemp(prefix="gradtrace-probe-calls-"))
atexit.register(shutil.rmtree, LOG_DIR, ignore_errors=True)  # the fake launcher's call logs


def probe_session(mode: str, log_name: str, options: dict | None = None):
    @pytest_lsp.fixture(scope="module", config=ClientServerConfig(
        server_command=wrapper_cmd("hooked_server.py"), client_factory=make_client,
        server_env={**SERVER_ENV, "GT_TEST_PROBE": mode, "GT_TEST_PROBE_LOG": str(LOG_DIR / log_name)}))
    async def fixture(lsp_client: LanguageClient):
        lsp_client.probe_log = LOG_DIR / log_name  # type: ignore[attr-defined]
        await lsp_client.initialize_session(types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"), initialization_options=options))
        yield
        await lsp_client.shutdown_session()

    return fixture


client = probe_session("fake", "fake.jsonl", {"gradtrace": {"probe": {"timeout": 30, "memory": 2048, "device": "cpu"},
                                                      "interpreter": ["/opt/venv/bin/python"]}})
missing_client = probe_session("missing", "missing.jsonl")
disabled_client = probe_session("fake", "disabled.jsonl", {"gradtrace": {"probe": {"enable": False}}})


async def run_probe(client, *arguments):
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="gradtrace.probe", arguments=list(arguments)))


async def test_probe_runs_with_progress_and_reports(client, tmp_path):
    uri = open_doc(client, tmp_path / "train.py", DETACH)
    await wait_diagnostics(client, uri, version=1)
    result = await run_probe(client, uri)
    assert result["status"] == "ok"
    assert {p["name"]: p["grad"] for p in result["parameters"]} == {"encoder.weight": "none", "head.weight": "ok"}
    # work-done progress: begin, the launcher's reports, end with the summary
    (reports,) = [r for r in client.progress_reports.values() if r]
    assert reports[0].kind == "begin" and reports[0].title == "gradtrace probe" and reports[0].cancellable
    assert [r.message for r in reports if r.kind == "report"] == ["building the model", "forward and backward"]
    assert reports[-1].kind == "end" and reports[-1].message == "1 without gradient (None) of 2 parameters"
    assert any("gradtrace probe: 1 without gradient" in m.message for m in client.messages)
    # probe findings merged with the static ones
    diags = await wait_diagnostics(client, uri, lambda ds: any(d.source == "gradtrace probe" for d in ds))
    probe = [d for d in diags if d.source == "gradtrace probe"]
    assert [(d.code, d.range.start.line) for d in probe] == [("GT901", CUT_LINE)]
    assert [d.code for d in diags if d.source == "gradtrace"] == ["GT105"]


async def test_probe_received_the_editor_settings(client, tmp_path):
    uri = open_doc(client, tmp_path / "settings.py", DETACH)
    result = await run_probe(client, {"uri": uri})  # the TextDocumentIdentifier shape VS Code sends
    assert result["status"] == "ok"
    calls = [json.loads(line) for line in client.probe_log.read_text().splitlines()]
    assert calls[-1] == {"path": str(tmp_path / "settings.py"), "python": "/opt/venv/bin/python",
                         "timeout": 30.0, "memory_mb": 2048, "device": "cpu"}


async def test_hover_shows_last_probe_result(client, tmp_path):
    uri = open_doc(client, tmp_path / "hover.py", DETACH)
    await run_probe(client, uri)
    line = DETACH.splitlines()[3]  # encoder, head = nn.Linear(4, 8), nn.Linear(8, 1)
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(3, line.index("encoder") + 2)))
    text = hover.contents.value
    assert "**gradtrace probe**" in text
    assert "| `encoder.weight` | **none** | – | `.detach()` at hover.py:7: output does not require grad |" in text
    assert "head.weight" not in text
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(3, line.index("head") + 1)))
    assert "| `head.weight` | ok | 0.421 | – |" in hover.contents.value


async def test_probe_findings_follow_edits_and_vanish_with_their_line(client, tmp_path):
    uri = open_doc(client, tmp_path / "moving.py", DETACH)
    await run_probe(client, uri)
    change_doc(client, uri, 2, "\n\n" + DETACH)
    diags = await wait_diagnostics(client, uri, version=2)
    assert [d.range.start.line for d in diags if d.source == "gradtrace probe"] == [CUT_LINE + 2]
    change_doc(client, uri, 3, DETACH.replace("encoder(x).detach()", "encoder(x).detach()  "))
    diags = await wait_diagnostics(client, uri, version=3)
    assert [d for d in diags if d.source == "gradtrace probe"] == []


async def test_probe_cancelled_from_the_progress(client, tmp_path):
    uri = open_doc(client, tmp_path / "slow.py", "# WAIT_FOR_CANCEL\n" + DETACH)
    before = set(client.progress_reports)
    task = asyncio.create_task(run_probe(client, uri))
    token = None
    for _ in range(200):
        new = [t for t in client.progress_reports if t not in before and client.progress_reports[t]]
        if new:
            token = new[0]
            break
        await asyncio.sleep(0.02)
    assert token is not None, "no progress began"
    client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
    with pytest.raises(Exception, match="cancelled"):
        await asyncio.wait_for(task, 10)
    assert client.progress_reports[token][-1].kind == "end"


async def test_probe_needs_a_document(client):
    with pytest.raises(Exception, match="expects the document URI"):
        await run_probe(client)


async def test_probe_not_available_is_an_error(missing_client, tmp_path):
    uri = open_doc(missing_client, tmp_path / "a.py", DETACH)
    with pytest.raises(Exception, match="gradtrace.probe is not available"):
        await run_probe(missing_client, uri)


async def test_probe_disabled_by_setting(disabled_client, tmp_path):
    uri = open_doc(disabled_client, tmp_path / "a.py", DETACH)
    with pytest.raises(Exception, match="disabled by the setting gradtrace.probe.enable"):
        await run_probe(disabled_client, uri)



@pytest_lsp.fixture(scope="module", config=ClientServerConfig(
    server_command=SERVER_CMD, server_env=SERVER_ENV, client_factory=make_client))
async def real_client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(capabilities=client_capabilities("visual-studio-code")))
    yield
    await lsp_client.shutdown_session()


async def test_real_probe_end_to_end(real_client):
    # the probe's sandbox sees the project, not the temp directories: use the checked-in file
    path = DATA / "detach.py"
    uri = open_doc(real_client, path)
    await wait_diagnostics(real_client, uri, version=1)
    result = await run_probe(real_client, uri)
    assert result["status"] == "ok", result.get("error")
    grads = {p["name"]: p["grad"] for p in result["parameters"]}
    assert grads["encoder.weight"] == "none" and grads["head.weight"] == "ok"
    diags = await wait_diagnostics(real_client, uri, lambda ds: any(d.source == "gradtrace probe" for d in ds))
    assert {d.code for d in diags if d.source == "gradtrace probe"} >= {"GT901"}
    line = DETACH.splitlines()[3]
    hover = await real_client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(3, line.index("encoder") + 1)))
    assert "| `encoder.weight` | **none** |" in hover.contents.value
    assert "at detach.py:7" in hover.contents.value


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(
    server_command=wrapper_cmd("hooked_server.py"), client_factory=make_client,
    server_env={**SERVER_ENV, "GT_TEST_PROBE": "fake", "GT_TEST_PROBE_LOG": str(LOG_DIR / "pull.jsonl")}))
async def pull_client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(capabilities=pull_capabilities()))
    yield
    await lsp_client.shutdown_session()


async def test_probe_results_reach_a_pull_client(pull_client, tmp_path):
    uri = open_doc(pull_client, tmp_path / "pulled.py", DETACH)
    first = await pull_client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
        text_document=types.TextDocumentIdentifier(uri)))
    before = pull_client.diagnostic_refresh_count
    await run_probe(pull_client, uri)
    await wait_until(lambda: pull_client.diagnostic_refresh_count > before, what="a refresh after the probe")
    report = await pull_client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
        text_document=types.TextDocumentIdentifier(uri), previous_result_id=first.result_id))
    assert report.kind == "full"
    assert sorted((d.source, d.code) for d in report.items) == [("gradtrace", "GT105"), ("gradtrace probe", "GT901")]
    assert uri not in pull_client.diagnostics  # nothing pushed


async def test_probe_cancelled_by_the_request(client, tmp_path):
    """What VS Code does when the user cancels the extension's progress notification: $/cancelRequest."""
    uri = open_doc(client, tmp_path / "slow_request.py", "# WAIT_FOR_CANCEL\n" + DETACH)
    before = set(client.progress_reports)
    future = client.protocol.send_request(types.WORKSPACE_EXECUTE_COMMAND, types.ExecuteCommandParams(
        command="gradtrace.probe", arguments=[uri]), msg_id="probe-to-cancel")
    token = None
    for _ in range(200):
        new = [t for t in client.progress_reports if t not in before and client.progress_reports[t]]
        if new:
            token = new[0]
            break
        await asyncio.sleep(0.02)
    assert token is not None, "no progress began"
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="probe-to-cancel"))
    with pytest.raises(Exception) as answer:  # noqa: B017 - an error answer, whichever class pygls maps it to
        await asyncio.wait_for(asyncio.wrap_future(future), 10)
    assert not isinstance(answer.value, asyncio.TimeoutError)
    for _ in range(200):
        if client.progress_reports[token][-1].kind == "end":
            break
        await asyncio.sleep(0.02)
    assert client.progress_reports[token][-1].kind == "end"
    assert client.progress_reports[token][-1].message == "cancelled"


def pull_without_refresh() -> types.ClientCapabilities:
    """Neovim 0.11: pulls diagnostics, but cannot be asked to pull again (no workspace.diagnostics)."""
    caps = pull_capabilities()
    caps.workspace.diagnostics = None
    return caps


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(
    server_command=wrapper_cmd("hooked_server.py"), client_factory=make_client,
    server_env={**SERVER_ENV, "GT_TEST_PROBE": "fake", "GT_TEST_PROBE_LOG": str(LOG_DIR / "norefresh.jsonl")}))
async def norefresh_client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(capabilities=pull_without_refresh()))
    yield
    await lsp_client.shutdown_session()


async def test_a_pull_client_without_refresh_gets_probe_findings_pushed(norefresh_client, tmp_path):
    client = norefresh_client
    uri = open_doc(client, tmp_path / "nvim.py", DETACH)
    first = await client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
        text_document=types.TextDocumentIdentifier(uri)))
    assert [d.code for d in first.items] == ["GT105"]
    await run_probe(client, uri)
    pushed = await wait_diagnostics(client, uri, lambda ds: any(d.source == "gradtrace probe" for d in ds),
                                    what="probe findings pushed right after the probe")
    assert [(d.code, d.range.start.line) for d in pushed] == [("GT901", CUT_LINE)]
    # the next pull has the static ones only: each diagnostic is shown once
    again = await client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
        text_document=types.TextDocumentIdentifier(uri)))
    assert [d.source for d in again.items] == ["gradtrace"]
    # an edit elsewhere: the pull after it re-pushes the finding, marked stale
    change_doc(client, uri, 2, DETACH + "# more\n")
    await client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
        text_document=types.TextDocumentIdentifier(uri)))
    stale = await wait_diagnostics(client, uri, lambda ds: ds and ds[0].message.startswith("stale probe result"),
                                   what="the stale mark")
    assert [(d.code, d.range.start.line) for d in stale] == [("GT901", CUT_LINE)]
    # the line it was found on changes: gone
    change_doc(client, uri, 3, DETACH.replace("encoder(x).detach()", "encoder(x)"))
    await client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
        text_document=types.TextDocumentIdentifier(uri)))
    await wait_diagnostics(client, uri, lambda ds: len(ds) == 0, version=3, what="the probe finding cleared")


async def test_an_edit_marks_pushed_probe_findings_stale(client, tmp_path):
    uri = open_doc(client, tmp_path / "stale.py", DETACH)
    await run_probe(client, uri)
    await wait_diagnostics(client, uri, lambda ds: any(d.source == "gradtrace probe" for d in ds))
    change_doc(client, uri, 2, DETACH + "# more\n")
    diags = await wait_diagnostics(client, uri, version=2)
    (probe,) = [d for d in diags if d.source == "gradtrace probe"]
    assert probe.message.startswith("stale probe result") and probe.range.start.line == CUT_LINE
