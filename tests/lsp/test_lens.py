"""The gradient lens through a real client (pytest-lsp, a real `gradtrace server` over stdio): the hover on any
value, the code lens above a loss and the jump to its cut, inlay hints, their settings, and what `gradtrace
explain` prints for the same positions. What the hover says the fixture's values carry is checked by running
the fixture with torch.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import pytest_lsp
import torch
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from . import helpers
from .helpers import DATA, SERVER_ENV, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")
TRAIN = DATA / "lens_train.py"
TEXT = TRAIN.read_text(encoding="utf-8")
LINES = TEXT.split("\n")
TITLE = "reaches 1 of 2 modules — model.encoder: cut at line 14 (.detach())"


def lens_client() -> LanguageClient:
    client = helpers.make_client()
    client.refreshes = []  # type: ignore[attr-defined]

    @client.feature(types.WORKSPACE_CODE_LENS_REFRESH)
    def code_lens_refresh(params):
        client.refreshes.append("codeLens")  # type: ignore[attr-defined]

    @client.feature(types.WORKSPACE_INLAY_HINT_REFRESH)
    def inlay_hint_refresh(params):
        client.refreshes.append("inlayHint")  # type: ignore[attr-defined]

    return client


def capabilities() -> types.ClientCapabilities:
    """VS Code's, with the inlay hints it has had since 1.67 (pytest-lsp's snapshot predates them)."""
    caps = client_capabilities("visual-studio-code")
    caps.workspace.inlay_hint = types.InlayHintWorkspaceClientCapabilities(refresh_support=True)
    caps.text_document.inlay_hint = types.InlayHintClientCapabilities()
    return caps


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(
    server_command=helpers.SERVER_CMD, server_env=SERVER_ENV, client_factory=lens_client))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(capabilities=capabilities()))
    yield
    await lsp_client.shutdown_session()


def at(word: str, line: int, occurrence: int = 0) -> types.Position:
    """The position of `word` on 1-based `line` (its `occurrence`-th time)."""
    text = LINES[line - 1]
    column = -1
    for _ in range(occurrence + 1):
        column = text.index(word, column + 1)
    return types.Position(line - 1, column + 1)


async def hover_text(client, uri: str, position: types.Position) -> str:
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri), position=position))
    assert hover is not None, position
    return hover.contents.value


async def code_lenses(client, uri: str) -> list[types.CodeLens]:
    return await client.text_document_code_lens_async(types.CodeLensParams(
        text_document=types.TextDocumentIdentifier(uri)))


async def inlay_hints(client, uri: str, lines: int) -> list[types.InlayHint]:
    return await client.text_document_inlay_hint_async(types.InlayHintParams(
        text_document=types.TextDocumentIdentifier(uri),
        range=types.Range(types.Position(0, 0), types.Position(lines, 0))))


def configure(client, **settings) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"gradtrace": settings}))


def explain(where: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "gradtrace", "explain", where], capture_output=True, text=True,
                          timeout=120, env=SERVER_ENV, cwd=helpers.ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def run_fixture() -> dict:
    """The fixture run with torch, without its `backward()` (the test differentiates its graphs itself)."""
    namespace: dict = {"__name__": "__main__"}
    exec(compile(TEXT.replace("loss.backward()", "pass"), str(TRAIN), "exec"), namespace)
    return namespace


def grads(value: torch.Tensor, module: torch.nn.Module) -> list:
    return list(torch.autograd.grad(value.sum(), list(module.parameters()), allow_unused=True, retain_graph=True))


async def test_done_when_logits_the_detached_value_and_the_lens_above_backward(client, tmp_path):
    uri = helpers.open_doc(client, tmp_path / "train.py", TEXT)
    await helpers.wait_diagnostics(client, uri, version=1)

    logits = await hover_text(client, uri, at("logits", 23))
    assert logits.startswith("∇ `logits` carries gradient from model.head\n"), logits
    assert "carries gradient from model.encoder" not in logits and "model.head, " not in logits
    assert "- lost: model.encoder — cut by `.detach()` on line 14" in logits

    frozen = await hover_text(client, uri, at("frozen", 14))
    assert frozen.startswith("∇ `frozen` carries no gradient: `.detach()` on line 14 cut its history"), frozen
    assert "- lost: model.encoder — cut by `.detach()` on line 14" in frozen

    [lens] = await code_lenses(client, uri)
    assert lens.range.start.line == 25 and LINES[25][lens.range.start.character:].startswith("loss.backward()")
    assert lens.command.title == TITLE
    assert lens.command.command == "gradtrace.revealCut"

    # the CLI says the same of the same positions
    cli = explain(f"{TRAIN}:23:5") + explain(f"{TRAIN}:14:9")
    for line in ("carries gradient from model.head", "lost: model.encoder — cut by `.detach()` on line 14",
                 "carries no gradient: `.detach()` on line 14 cut its history", f"`loss` {TITLE}"):
        assert line in cli, (line, cli)

    # and torch does what the hover says
    namespace = run_fixture()
    model, value = namespace["model"], namespace["logits"]
    assert value.requires_grad
    assert all(g is not None for g in grads(value, model.head))
    assert all(g is None for g in grads(value, model.encoder))
    assert not model.encoder(namespace["x"]).detach().requires_grad


async def test_clicking_the_lens_shows_the_cut(client, tmp_path):
    uri = helpers.open_doc(client, tmp_path / "click.py", TEXT)
    [lens] = await code_lenses(client, uri)
    shown = len(client.shown_documents)
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command=lens.command.command, arguments=lens.command.arguments))
    assert result == {"success": True}
    await wait_until(lambda: len(client.shown_documents) > shown, what="window/showDocument")
    request = client.shown_documents[-1]
    assert request.uri == uri and request.take_focus
    selection = request.selection
    assert selection.start.line == selection.end.line == 13
    assert LINES[13][selection.start.character:selection.end.character] == "frozen = features.detach()"


async def test_reveal_cut_with_a_bad_argument_is_an_invalid_params_error(client):
    with pytest.raises(Exception, match="expects"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="gradtrace.revealCut", arguments=[{"uri": "file:///x.py"}]))


async def test_hover_on_a_plain_variable_and_on_a_finding(client, tmp_path):
    uri = helpers.open_doc(client, tmp_path / "plain.py", TEXT)
    await helpers.wait_diagnostics(client, uri, version=1)
    target = await hover_text(client, uri, at("target", 22))
    assert target == "∇ `target` carries no gradient: an integer or boolean tensor: it cannot carry a gradient"
    value = run_fixture()["target"]
    assert not value.requires_grad and not value.dtype.is_floating_point

    # on the finding (GT105 on `features.detach()`): the finding's hover (its fix) first, the lens after it
    finding = await hover_text(client, uri, at("detach", 14))
    fix, lens = finding.split("\n\n---\n\n")
    assert fix.startswith("**Fix:** Remove `.detach()`"), fix
    assert lens.startswith("∇ `features.detach()` carries no gradient"), lens

    # nothing on a line without values, nor on a module
    blank = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(16, 0)))
    assert blank is None
    module = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri), position=at("model", 18)))
    assert module is None


async def test_a_fully_connected_loss_says_so_without_a_command(client, tmp_path):
    uri = helpers.open_doc(client, tmp_path / "fine.py", TEXT.replace("features.detach()", "features"))
    [lens] = await code_lenses(client, uri)
    assert lens.command.title == "reaches all 2 modules" and lens.command.command == ""


async def test_inlay_hints_are_off_by_default_and_name_the_cut(client, tmp_path):
    uri = helpers.open_doc(client, tmp_path / "hints.py", TEXT)
    assert list(await inlay_hints(client, uri, len(LINES))) == []
    refreshes = len(client.refreshes)
    configure(client, inlayHints={"enable": True})
    await wait_until(lambda: "inlayHint" in client.refreshes[refreshes:], what="an inlay hint refresh")
    try:
        [hint] = await inlay_hints(client, uri, len(LINES))
        assert hint.label == "∅∇" and hint.position == types.Position(13, len("        frozen"))
        assert hint.tooltip.value == ("`frozen` carries no gradient: `.detach()` on line 14 cut model.encoder from "
                                      "it, on its way to the loss on line 26.")
        assert list(await client.text_document_inlay_hint_async(types.InlayHintParams(
            text_document=types.TextDocumentIdentifier(uri),
            range=types.Range(types.Position(20, 0), types.Position(27, 0))))) == []
    finally:
        configure(client, inlayHints={"enable": False})


async def test_lens_enable_false_removes_the_code_lens(client, tmp_path):
    uri = helpers.open_doc(client, tmp_path / "off.py", TEXT)
    assert len(await code_lenses(client, uri)) == 1
    refreshes = len(client.refreshes)
    configure(client, lens={"enable": False})
    await wait_until(lambda: "codeLens" in client.refreshes[refreshes:], what="a code lens refresh")
    try:
        assert list(await code_lenses(client, uri)) == []
    finally:
        configure(client, lens={"enable": True})
    assert len(await code_lenses(client, uri)) == 1


async def test_a_bad_lens_setting_is_named(client):
    count = len(client.messages)
    configure(client, lens={"enable": "yes"})
    await wait_until(lambda: len(client.messages) > count, what="a message about gradtrace.lens.enable")
    assert "gradtrace.lens.enable" in client.messages[-1].message
    configure(client)


def analyses_logged(client, name: str) -> list[str]:
    return [m.message for m in client.log_messages if m.message.startswith(f"{name} v")]


async def test_the_lens_follows_a_comment_edit_and_an_added_line(client, tmp_path):
    configure(client, logLevel="debug")
    uri = helpers.open_doc(client, tmp_path / "moved.py", TEXT)
    await helpers.wait_diagnostics(client, uri, version=1)
    # a comment on the detach line: nothing is analysed again, the lens moves with the text
    commented = TEXT.replace("frozen = features.detach()", "frozen = features.detach()  # stop here")
    helpers.change_doc(client, uri, 2, commented)
    await helpers.wait_diagnostics(client, uri, version=2)
    assert analyses_logged(client, "moved.py")[-1].endswith("(mapped through a comment or whitespace edit)")
    [lens] = await code_lenses(client, uri)
    assert lens.command.title == TITLE
    assert "carries gradient from model.head" in await hover_text(client, uri, at("logits", 23))
    # a line added above the cut: the titles name the line where the cut now is
    helpers.change_doc(client, uri, 3, "# a comment line\n" + commented)
    await helpers.wait_diagnostics(client, uri, version=3)
    assert analyses_logged(client, "moved.py")[-1].endswith("(analysed)")
    [lens] = await code_lenses(client, uri)
    assert lens.command.title == TITLE.replace("line 14", "line 15") and lens.range.start.line == 26
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(23, 5)))
    assert "`logits` carries gradient from model.head" in hover.contents.value
    assert "on line 15" in hover.contents.value
    configure(client)


async def test_a_file_without_a_framework_has_no_lens(client, tmp_path):
    uri = helpers.open_doc(client, tmp_path / "plain_python.py", "x = 1\ny = x + 2\n")
    await helpers.wait_diagnostics(client, uri, version=1)
    assert list(await code_lenses(client, uri)) == []
    assert await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(1, 0))) is None
