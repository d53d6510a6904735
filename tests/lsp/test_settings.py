"""Settings: initializationOptions, didChangeConfiguration, pyproject.toml, run-on-save, bad values."""

from __future__ import annotations

import asyncio

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
    wait_diagnostics,
    wait_until,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
DETACH = (DATA / "detach.py").read_text(encoding="utf-8")
CONFIG = ClientServerConfig(server_command=SERVER_CMD, server_env=SERVER_ENV, client_factory=make_client)


@pytest_lsp.fixture(scope="module", config=CONFIG)
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"),
        initialization_options={"settings": {"lint": {"select": ["BOGUS"], "run": "onSave"},
                                             "probe": {"timeout": "soon", "device": "cpu"}}},
    ))
    yield
    await lsp_client.shutdown_session()


async def test_bad_initial_settings_are_named_and_defaulted(client, tmp_path):
    await wait_until(lambda: len(client.messages) >= 2, what="two showMessage")
    texts = [m.message for m in client.messages]
    assert any("gradtrace.lint.select" in t and "'BOGUS'" in t and "default" in t for t in texts), texts
    assert any("gradtrace.probe.timeout" in t and "expected a number" in t for t in texts), texts
    assert all(m.type == types.MessageType.Warning for m in client.messages)
    # lint.select fell back to its default (every rule): GT105 is reported
    uri = open_doc(client, tmp_path / "a.py", DETACH)
    assert [d.code for d in await wait_diagnostics(client, uri)] == ["GT105"]


async def test_run_on_save(client, tmp_path):
    uri = open_doc(client, tmp_path / "onsave.py", DETACH)
    await wait_diagnostics(client, uri, version=1)
    change_doc(client, uri, 2, "\n\n" + DETACH)
    await asyncio.sleep(0.5)
    assert [p.version for p in client.published if p.uri == uri] == [1], "analysed on type in onSave mode"
    client.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri)))
    diags = await wait_diagnostics(client, uri, version=2)
    assert diags[0].range.start.line == 8


async def test_pyproject_applies_and_editor_settings_win(client, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.gradtrace]\nselect = ["GT0"]\n', encoding="utf-8")
    uri = open_doc(client, tmp_path / "proj.py", DETACH)
    assert await wait_diagnostics(client, uri, version=1) == []  # GT1xx not selected by the project
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"gradtrace": {"lint": {"select": ["GT1"]}}}))
    diags = await wait_diagnostics(client, uri, lambda ds: len(ds) > 0, what="GT105 after the editor selects GT1")
    assert [d.code for d in diags] == ["GT105"]


async def test_bad_value_on_change_is_named(client):
    count = len(client.messages)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"gradtrace": {"probe": {"memory": -5}, "fixAll": "yes"}}))
    await wait_until(lambda: len(client.messages) >= count + 2, what="messages for two bad settings")
    texts = " | ".join(m.message for m in client.messages[count:])
    assert "gradtrace.probe.memory" in texts and "gradtrace.fixAll" in texts


@pytest_lsp.fixture(scope="module", config=CONFIG)
async def folders_client(lsp_client: LanguageClient, tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    (root / "quiet").mkdir()
    (root / "loud").mkdir()
    lsp_client.root = root  # type: ignore[attr-defined]
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"),
        workspace_folders=[types.WorkspaceFolder(uri=(root / n).as_uri(), name=n) for n in ("quiet", "loud")],
        initialization_options={  # the shape the VS Code tools template sends
            "settings": [{"workspace": (root / "quiet").as_uri(), "lint": {"ignore": ["GT105"]}},
                         {"workspace": (root / "loud").as_uri()}],
            "globalSettings": {"logLevel": "debug"},
        },
    ))
    yield
    await lsp_client.shutdown_session()


async def test_per_folder_settings(folders_client):
    root = folders_client.root
    quiet = open_doc(folders_client, root / "quiet" / "a.py", DETACH)
    loud = open_doc(folders_client, root / "loud" / "a.py", DETACH)
    assert await wait_diagnostics(folders_client, quiet, version=1) == []
    assert [d.code for d in await wait_diagnostics(folders_client, loud, version=1)] == ["GT105"]
    assert folders_client.messages == []


async def test_pyproject_change_reported_by_the_watcher_applies(client, tmp_path):
    (watcher,) = [r for r in client.registrations if r.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES]
    assert watcher.register_options["watchers"][0]["globPattern"] == "**/pyproject.toml"
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"gradtrace": {}}))
    uri = open_doc(client, tmp_path / "watched.py", DETACH)
    assert [d.code for d in await wait_diagnostics(client, uri, version=1)] == ["GT105"]
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.gradtrace]\nignore = ["GT105"]\n', encoding="utf-8")
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(
        changes=[types.FileEvent(uri=pyproject.as_uri(), type=types.FileChangeType.Created)]))
    await wait_diagnostics(client, uri, lambda ds: len(ds) == 0, what="GT105 gone after the pyproject change")


async def test_bad_pyproject_value_is_shown_once(client, tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.gradtrace]\nselect = 5\n", encoding="utf-8")
    count = len(client.messages)
    uri = open_doc(client, tmp_path / "badproject.py", DETACH)
    await wait_diagnostics(client, uri, version=1)
    await wait_until(lambda: len(client.messages) > count, what="a message about pyproject.toml")
    texts = [m.message for m in client.messages[count:]]
    assert any("pyproject.toml" in t and "tool.gradtrace.select" in t for t in texts), texts
    change_doc(client, uri, 2, DETACH + "\n")
    await wait_diagnostics(client, uri, version=2)
    assert len([m for m in client.messages[count:] if "tool.gradtrace.select" in m.message]) == 1
