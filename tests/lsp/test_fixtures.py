"""Every file in fixtures/ through the server: the same findings as `gradtrace check`, and every quick fix
applies and leaves no finding at its spot (VS Code's stored capabilities, push)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from .helpers import (
    ROOT,
    SERVER_CMD,
    SERVER_ENV,
    apply_text_edits,
    change_doc,
    make_client,
    open_doc,
    wait_diagnostics,
    workspace_edit_for,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
FIXTURES = sorted((ROOT / "fixtures").rglob("*.py"))


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(server_command=SERVER_CMD, server_env=SERVER_ENV, client_factory=make_client),
)
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), root_uri=ROOT.as_uri()))
    yield
    await lsp_client.shutdown_session()


def cli_findings() -> dict[str, list[tuple[str, int]]]:
    run = subprocess.run([sys.executable, "-m", "gradtrace", "check", "--format", "json", "--no-cache",
                          *map(str, FIXTURES)], capture_output=True, text=True, env=SERVER_ENV, cwd=ROOT, timeout=120)
    assert run.returncode in (0, 1), run.stderr
    out: dict[str, list[tuple[str, int]]] = {}
    for f in json.loads(run.stdout):
        out.setdefault(str((ROOT / f["path"]).resolve()), []).append((f["code"], f["line"]))
    return out


async def test_server_reports_what_the_cli_reports(client):
    assert len(FIXTURES) >= 10
    expected = cli_findings()
    assert sum(len(v) for v in expected.values()) >= 10
    for path in FIXTURES:
        uri = open_doc(client, path)
        diags = await wait_diagnostics(client, uri, version=1, what=f"diagnostics for {path.name}")
        got = sorted((d.code, d.range.start.line + 1) for d in diags)
        assert got == sorted(expected.get(str(path.resolve()), [])), path.name
        assert all(d.source == "gradtrace" and d.code_description for d in diags), path.name


async def test_every_quick_fix_applies_and_rechecks_clean_there(client):
    fixed = 0
    for path in FIXTURES:
        text = path.read_text(encoding="utf-8")
        uri = path.as_uri()
        diags = await wait_diagnostics(client, uri, version=1)
        version = 1
        for diag in [d for d in diags if d.data and d.data.get("fix")]:
            actions = await client.text_document_code_action_async(types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri), range=diag.range,
                context=types.CodeActionContext(diagnostics=[diag], only=[types.CodeActionKind.QuickFix])))
            action = next(a for a in actions if a.title.startswith(f"gradtrace ({diag.code}): "))
            assert action.is_preferred is (True if diag.data["fix"]["safe"] else None)
            new_text = apply_text_edits(text, workspace_edit_for(action.edit, uri))
            assert new_text != text
            version += 1
            change_doc(client, uri, version, new_text)
            after = await wait_diagnostics(client, uri, version=version)
            lines = {e["range"]["start"]["line"] for e in diag.data["fix"]["edits"]} | {diag.range.start.line}
            before_there = {(d.code, d.range.start.line) for d in diags if d.range.start.line in lines}
            after_there = {(d.code, d.range.start.line) for d in after if d.range.start.line in lines}
            assert (diag.code, diag.range.start.line) not in after_there, f"{path.name}: {diag.code} still there"
            assert after_there <= before_there, f"{path.name}: the fix for {diag.code} caused {after_there}"
            version += 1
            change_doc(client, uri, version, text)  # back to the original for the next fix
            await wait_diagnostics(client, uri, version=version)
            fixed += 1
    assert fixed >= 5
