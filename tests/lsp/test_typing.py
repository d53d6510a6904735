"""Typing through a real server: findings survive syntax errors, GT000 sits where Python's parser says,
edits of comments are not analysed again, and files that import an edited module are re-checked.

VS Code's stored capabilities (push diagnostics, UTF-16), one character per didChange, the next key
sent once the diagnostics of the previous version arrived.
"""

from __future__ import annotations

import ast
import asyncio
import re

import pytest
import pytest_lsp
from gradtrace.lsp.scheduler import DEPENDENT_DELAY
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from .helpers import ROOT, SERVER_CMD, SERVER_ENV, change_doc, make_client, open_doc, wait_diagnostics

pytestmark = pytest.mark.asyncio(loop_scope="module")
MODEL = (ROOT / "fixtures" / "torch" / "bad_detach.py").read_text(encoding="utf-8")
TYPED = "for p in self.parameters():"


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(server_command=SERVER_CMD, server_env=SERVER_ENV, client_factory=make_client),
)
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), initialization_options={"logLevel": "debug"}))
    yield
    await lsp_client.shutdown_session()


def key(d: types.Diagnostic) -> tuple:
    return d.code, d.range.start.line, d.range.start.character, d.range.end.line, d.range.end.character


def gt000(diags) -> list[types.Diagnostic]:
    return [d for d in diags if d.code == "GT000"]


def parser_position(text: str) -> tuple[int, int] | None:
    """0-based (line, UTF-16 column) where Python's parser reports the error (ASCII lines here)."""
    try:
        ast.parse(text)
    except SyntaxError as exc:
        return exc.lineno - 1, exc.offset - 1
    return None


def insert(client, uri: str, version: int, line: int, character: int, text: str) -> None:
    at = types.Position(line, character)
    change_doc(client, uri, version, text, types.Range(at, at))


async def test_typing_a_loop_header_in_a_method_keeps_the_other_findings(client, tmp_path):
    uri = open_doc(client, tmp_path / "model.py", MODEL)
    before = await wait_diagnostics(client, uri, lambda ds: ds, version=1, what="the first diagnostics")
    assert [d.code for d in before] == ["GT105"]
    lines = MODEL.split("\n")
    at = next(i for i, line in enumerate(lines) if "def forward" in line) + 1  # a new line in forward()
    indent = " " * 8
    insert(client, uri, 2, at, 0, indent + "\n")
    await wait_diagnostics(client, uri, version=2)
    shifted = [(c, line + (line >= at), col, el + (el >= at), ec) for c, line, col, el, ec in map(key, before)]
    text = "\n".join(lines[:at] + [indent] + lines[at:])
    for n, ch in enumerate(TYPED, start=3):
        insert(client, uri, n, at, len(indent) + n - 3, ch)
        text = text.replace(indent + TYPED[:n - 3] + "\n", indent + TYPED[:n - 2] + "\n", 1)
        diags = await wait_diagnostics(client, uri, version=n, what=f"diagnostics after typing {TYPED[:n - 2]!r}")
        assert [key(d) for d in diags if d.code != "GT000"] == shifted, TYPED[:n - 2]
        expected = parser_position(text)
        assert [(d.range.start.line, d.range.start.character) for d in gt000(diags)] == \
            ([expected] if expected else []), TYPED[:n - 2]


async def test_the_syntax_error_column_after_incremental_edits_matches_a_fresh_open(client, tmp_path):
    """Typed with an editor's auto-closed brackets and a backspace, then compared with the same text opened."""
    uri = open_doc(client, tmp_path / "edited.py", MODEL)
    await wait_diagnostics(client, uri, version=1)
    lines = MODEL.split("\n")
    at = next(i for i, line in enumerate(lines) if "latent = self.encoder(x)" in line) + 1
    steps = [(0, "        for p in self.parameters\n"), (32, "()"), (34, "x"), (34, "")]  # "x", then backspace
    version = 1
    for column, text in steps:
        version += 1
        if text:
            insert(client, uri, version, at, column, text)
        else:
            change_doc(client, uri, version, "", types.Range(types.Position(at, column), types.Position(at, column + 1)))
        await wait_diagnostics(client, uri, version=version)
    edited = await wait_diagnostics(client, uri, version=version)
    final = "\n".join(lines[:at] + ["        for p in self.parameters()"] + lines[at:])
    fresh_uri = open_doc(client, tmp_path / "fresh.py", final)
    fresh = await wait_diagnostics(client, fresh_uri, version=1)
    assert [key(d) for d in edited] == [key(d) for d in fresh]
    (syntax,) = gt000(edited)
    assert (syntax.range.start.line, syntax.range.start.character) == parser_position(final) == (at, 34)
    assert [d.code for d in edited if d.code != "GT000"] == ["GT105"]


async def test_show_syntax_errors_off_hides_gt000_only(client, tmp_path):
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"gradtrace": {"showSyntaxErrors": False, "logLevel": "debug"}}))
    try:
        uri = open_doc(client, tmp_path / "quiet.py", MODEL + "\ndef broken(:\n    pass\n")
        diags = await wait_diagnostics(client, uri, lambda ds: ds, version=1, what="diagnostics")
        assert [d.code for d in diags] == ["GT105"]
    finally:
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"gradtrace": {"showSyntaxErrors": True, "logLevel": "debug"}}))


def analyses_logged(client, name: str) -> list[str]:
    """The server's debug log lines about the analyses of file `name`."""
    return [m.message for m in client.log_messages if re.match(rf"{re.escape(name)} v\S+: \d+ findings in", m.message)]


async def test_a_comment_edit_is_mapped_not_analysed_and_a_code_edit_reaches_the_importers(client, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n", encoding="utf-8")
    model_text = (ROOT / "fixtures" / "project" / "model.py").read_text(encoding="utf-8")
    train_text = (ROOT / "fixtures" / "project" / "train.py").read_text(encoding="utf-8")
    model = open_doc(client, project / "model.py", model_text)
    train = open_doc(client, project / "train.py", train_text)
    await wait_diagnostics(client, model, version=1)
    train_first = await wait_diagnostics(client, train, lambda ds: ds, version=1, what="train.py's findings")
    assert [d.code for d in train_first] == ["GT105"]  # the detach lives in model.py
    train_analyses = len(analyses_logged(client, "train.py"))
    model_lines = model_text.split("\n")
    detach = next(i for i, line in enumerate(model_lines) if ".detach()" in line)

    insert(client, model, 2, detach, len(model_lines[detach]), "  # keep")
    await wait_diagnostics(client, model, version=2)
    assert "(mapped through a comment or whitespace edit)" in analyses_logged(client, "model.py")[-1]
    await asyncio.sleep(3 * DEPENDENT_DELAY)
    assert len(analyses_logged(client, "train.py")) == train_analyses  # a comment cannot change train.py

    code_line = next(i for i, line in enumerate(model_lines) if "def forward" in line)
    insert(client, model, 3, code_line, 0, "SCALE = 2\n")  # code: train.py must be checked again
    await wait_diagnostics(client, model, version=3)
    assert analyses_logged(client, "model.py")[-1].endswith("(analysed)")
    for _ in range(200):
        if len(analyses_logged(client, "train.py")) > train_analyses:
            break
        await asyncio.sleep(0.05)
    assert len(analyses_logged(client, "train.py")) == train_analyses + 1
