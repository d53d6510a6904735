"""Push diagnostics, hover, code actions and commands, with VS Code's stored client capabilities."""

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
    apply_text_edits,
    change_doc,
    make_client,
    open_doc,
    wait_diagnostics,
    workspace_edit_for,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
DETACH = (DATA / "detach.py").read_text(encoding="utf-8")
DETACH_LINE = 6  # 0-based line of `label, feats = "😋🐍", encoder(x).detach()`


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(server_command=SERVER_CMD, server_env=SERVER_ENV, client_factory=make_client),
)
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(capabilities=client_capabilities("visual-studio-code")))
    yield
    await lsp_client.shutdown_session()


def gt105(diags):
    return [d for d in diags if d.code == "GT105"]


async def open_detach(client, tmp_path, name="train.py", text=DETACH):
    uri = open_doc(client, tmp_path / name, text)
    diags = await wait_diagnostics(client, uri, gt105, what="GT105")
    return uri, diags


async def code_actions(client, uri, diags, only=None):
    return await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=diags[0].range,
        context=types.CodeActionContext(diagnostics=diags, only=only),
    ))


async def test_diagnostic_carries_code_link_source_severity_related_and_fix(client, tmp_path):
    uri, diags = await open_detach(client, tmp_path)
    (d,) = gt105(diags)
    # "😋🐍" are two astral-plane characters before the finding: one extra UTF-16 unit each
    line = DETACH.splitlines()[DETACH_LINE]
    start_cp = line.index("encoder(x).detach()")
    assert d.range.start == types.Position(DETACH_LINE, start_cp + 2)
    assert d.range.end == types.Position(DETACH_LINE, start_cp + 2 + len("encoder(x).detach()"))
    assert d.source == "gradtrace"
    assert d.severity == types.DiagnosticSeverity.Warning
    assert d.code_description.href.startswith("file:") and d.code_description.href.endswith("/GT105.md")
    assert "encoder" in d.message
    related = {(r.location.range.start.line, r.message) for r in d.related_information}
    assert (3, "`encoder` is defined here") in related
    assert any(line == 8 for line, _ in related)  # loss.backward()
    assert all(r.location.uri == uri for r in d.related_information)
    fix = d.data["fix"]
    assert fix["safe"] is True
    assert fix["edits"][0]["range"]["start"] == {"line": DETACH_LINE, "character": start_cp + 2}


async def test_rapid_changes_are_debounced_and_stale_versions_dropped(client, tmp_path):
    uri, _ = await open_detach(client, tmp_path, "typing.py")
    lines = DETACH.splitlines(keepends=True)
    for version in range(2, 8):  # type a comment, one character per change
        text = "".join(lines[:DETACH_LINE]) + "# " + "x" * version + "\n" + "".join(lines[DETACH_LINE:])
        change_doc(client, uri, version, text)
    diags = await wait_diagnostics(client, uri, gt105, version=7, what="diagnostics for version 7")
    assert gt105(diags)[0].range.start.line == DETACH_LINE + 1
    versions = [p.version for p in client.published if p.uri == uri]
    assert versions == sorted(versions), "an older version was published after a newer one"
    assert versions.count(7) == 1
    assert len([v for v in versions if v > 1]) < 6, "every keystroke was published: no debounce"


async def test_incremental_change_moves_the_finding(client, tmp_path):
    uri, _ = await open_detach(client, tmp_path, "incremental.py")
    change_doc(client, uri, 2, "\n\n", types.Range(types.Position(0, 0), types.Position(0, 0)))
    diags = await wait_diagnostics(client, uri, gt105, version=2)
    assert gt105(diags)[0].range.start.line == DETACH_LINE + 2


async def test_syntax_error_mid_typing_keeps_unaffected_findings(client, tmp_path):
    uri, _ = await open_detach(client, tmp_path, "midtyping.py")
    broken = DETACH + "def oops(:\n"
    change_doc(client, uri, 2, broken)
    diags = await wait_diagnostics(client, uri, lambda ds: any(d.code == "GT000" for d in ds), version=2)
    assert [d.code for d in diags if d.code == "GT000"] == ["GT000"]
    assert gt105(diags)[0].range.start.line == DETACH_LINE  # the last good finding, still where it is
    change_doc(client, uri, 3, DETACH)
    diags = await wait_diagnostics(client, uri, version=3)
    assert [d.code for d in diags] == ["GT105"]


async def test_close_clears_diagnostics(client, tmp_path):
    uri, _ = await open_detach(client, tmp_path, "closing.py")
    client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))
    await wait_diagnostics(client, uri, lambda ds: len(ds) == 0, what="cleared diagnostics")


async def test_hover_on_diagnostic_explains_the_rule(client, tmp_path):
    uri, diags = await open_detach(client, tmp_path, "hover.py")
    pos = diags[0].range.start
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(pos.line, pos.character + 3)))
    text = hover.contents.value
    assert text.startswith("**Fix:** Remove `.detach()` (quick fix)")  # the fix first
    assert "```diff\n-feats = encoder(x).detach()\n+feats = encoder(x)\n```" in text
    assert "**Why:** `detach()` returns a tensor that shares data but has no history." in text
    assert text.index("**Fix:**") < text.index("```diff") < text.index("**Why:**") < text.index("GT105 detach-on-loss-path")
    assert diags[0].message not in text  # the editor shows the message right above
    assert len(text) < 400
    # outside any diagnostic, on plain code: nothing to say
    nothing = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(0, 2)))
    assert nothing is None


async def test_hover_on_noqa_code_shows_rule_summary(client, tmp_path):
    text = "import torch\nx = torch.zeros(3)  # noqa: GT120, GT105\n"
    uri = open_doc(client, tmp_path / "noqa.py", text)
    await wait_diagnostics(client, uri)
    col = text.splitlines()[1].index("GT105") + 2
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(1, col)))
    assert "**GT105** `detach-on-loss-path`" in hover.contents.value
    assert "only path from trainable parameters to the loss" in hover.contents.value
    assert hover.range.start.character == col - 2


async def test_quick_fix_applies_and_recheck_is_clean(client, tmp_path):
    uri, diags = await open_detach(client, tmp_path, "quickfix.py")
    actions = await code_actions(client, uri, gt105(diags))
    fix = next(a for a in actions if a.title == "gradtrace (GT105): Remove `.detach()`")
    assert fix.kind == types.CodeActionKind.QuickFix and fix.is_preferred is True
    assert fix.diagnostics[0].code == "GT105"
    new_text = apply_text_edits(DETACH, workspace_edit_for(fix.edit, uri))
    assert new_text.splitlines()[DETACH_LINE] == 'label, feats = "😋🐍", encoder(x)'
    change_doc(client, uri, 2, new_text)
    diags = await wait_diagnostics(client, uri, version=2)
    assert gt105(diags) == []


async def test_disable_for_this_line_inserts_then_extends_noqa(client, tmp_path):
    uri, diags = await open_detach(client, tmp_path, "disable.py")
    actions = await code_actions(client, uri, gt105(diags))
    disable = next(a for a in actions if "Disable GT105 for this line" in a.title)
    assert disable.is_preferred is not True
    new_text = apply_text_edits(DETACH, workspace_edit_for(disable.edit, uri))
    assert new_text.splitlines()[DETACH_LINE].endswith("encoder(x).detach()  # noqa: GT105")
    change_doc(client, uri, 2, new_text)
    assert gt105(await wait_diagnostics(client, uri, version=2)) == []

    other = DETACH.replace("encoder(x).detach()\n", "encoder(x).detach()  # noqa: GT120\n")
    change_doc(client, uri, 3, other)
    diags = await wait_diagnostics(client, uri, gt105, version=3)
    actions = await code_actions(client, uri, gt105(diags))
    disable = next(a for a in actions if "Disable GT105 for this line" in a.title)
    extended = apply_text_edits(other, workspace_edit_for(disable.edit, uri))
    assert extended.splitlines()[DETACH_LINE].endswith("# noqa: GT120, GT105")


async def test_fix_all_resolves_to_every_safe_fix(client, tmp_path):
    two = DETACH.replace("loss = ((head(feats) - y) ** 2).mean()",
                         "loss = ((head(feats) - y) ** 2).mean()\nmore = head(encoder(x).detach()).sum()")
    two = two.replace("loss.backward()", "(loss + more).backward()")
    uri = open_doc(client, tmp_path / "fixall.py", two)
    diags = await wait_diagnostics(client, uri, lambda ds: len(gt105(ds)) == 2, what="two GT105")
    actions = await code_actions(client, uri, diags, only=["source.fixAll"])
    assert [a.kind for a in actions] == ["source.fixAll.gradtrace"]
    action = actions[0]
    if action.edit is None:  # the client resolves it when chosen
        action = await client.code_action_resolve_async(action)
    fixed = apply_text_edits(two, workspace_edit_for(action.edit, uri))
    assert ".detach()" not in fixed
    assert fixed.splitlines()[0] == "import torch"  # untouched lines stay as they were
    change_doc(client, uri, 2, fixed)
    assert gt105(await wait_diagnostics(client, uri, version=2)) == []
    # only quick fixes asked for: no fixAll
    actions = await code_actions(client, uri, diags, only=[types.CodeActionKind.QuickFix])
    assert all(a.kind == types.CodeActionKind.QuickFix for a in actions)


async def test_show_rule_docs(client):
    docs = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="gradtrace.showRuleDocs", arguments=["gt105"]))
    assert docs["code"] == "GT105"
    assert "## Why is this bad?" in docs["markdown"] and docs["url"].endswith("/GT105.md")
    listing = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="gradtrace.showRuleDocs", arguments=[]))
    assert "GT105" in [r["code"] for r in listing["rules"]]
    with pytest.raises(Exception, match="no gradtrace rule 'GT777'"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="gradtrace.showRuleDocs", arguments=["GT777"]))


async def test_other_languages_are_not_analysed(client, tmp_path):
    notes = open_doc(client, tmp_path / "notes.md", "# Notes\nx = (\n", language="markdown")
    uri, _ = await open_detach(client, tmp_path, "after_notes.py")
    await asyncio.sleep(0.3)
    assert notes not in client.diagnostics


async def test_code_actions_for_a_diagnostic_older_than_the_document(client, tmp_path):
    uri, diags = await open_detach(client, tmp_path, "stale.py")
    old = gt105(diags)
    change_doc(client, uri, 2, DETACH + "# a comment at the end\n")  # the finding stays where it was
    await wait_diagnostics(client, uri, version=2)
    actions = await code_actions(client, uri, old)
    fix = next(a for a in actions if a.title.startswith("gradtrace (GT105)"))
    assert fix.edit.document_changes[0].text_document.version == 2
    change_doc(client, uri, 3, "\n" + DETACH)  # now it moved: the old range no longer holds it
    await wait_diagnostics(client, uri, version=3)
    actions = await code_actions(client, uri, old)
    assert not [a for a in actions if a.kind == types.CodeActionKind.QuickFix]


async def test_untitled_and_crlf_documents(client, tmp_path):
    untitled = "untitled:Untitled-1"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=untitled, language_id="python", version=1, text=DETACH)))
    assert [d.code for d in await wait_diagnostics(client, untitled, version=1)] == ["GT105"]
    crlf = DETACH.replace("\n", "\r\n")
    uri = open_doc(client, tmp_path / "crlf.py", crlf)
    (d,) = gt105(await wait_diagnostics(client, uri, version=1))
    assert d.range.start.line == DETACH_LINE
    actions = await code_actions(client, uri, [d])
    fix = next(a for a in actions if a.title.startswith("gradtrace (GT105)"))
    fixed = apply_text_edits(crlf, workspace_edit_for(fix.edit, uri))
    assert fixed.split("\r\n")[DETACH_LINE] == 'label, feats = "😋🐍", encoder(x)'
