"""The gradient lens in the editor: the hover's lines on any value, a code lens above each loss, inlay hints.

- hover: what the value under the cursor carries gradient from (grouped by module), the cuts on its way and what
  each lost, or why it carries nothing (`lens_markdown`, called by `hover.py` after a finding's own hover);
- code lens (`gradtrace.lens.enable`, on by default): above each `backward()`, `autograd.grad`, optimizer step...,
  what the loss reaches (`reaches 1 of 2 modules — model.encoder: cut at line 13 (.detach())`); a click runs
  `gradtrace.revealCut`, which asks the editor to show the cut (`window/showDocument`);
- inlay hints (`gradtrace.inlayHints.enable`, off by default): `∅∇` after an assignment whose value lost its
  gradient history on the way to a loss, the cut in its tooltip.

Everything is read from the document's analysis (`Analysis.lens`, computed with its findings in the analysis
process from the same interpreter run): nothing is analysed here, and the three views cannot disagree.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import from_fs_path

from gradtrace.lsp.analyses import file_lines
from gradtrace.positions import span_to_lsp

if TYPE_CHECKING:
    from gradtrace.analysis.lens import SinkLens, ValueFacts
    from gradtrace.lsp.analyses import Analysis
    from gradtrace.lsp.server import GradtraceServer

REVEAL_CUT = "gradtrace.revealCut"
MAX_CUTS_SHOWN = 3


# ---- hover -------------------------------------------------------------------------------------------


def value_at(analysis: Analysis, uri: str, line0: int, column: int) -> ValueFacts | None:
    """What the value at (0-based line of `uri`, 1-based code-point column) carries, from `analysis`."""
    if analysis.lens is None or analysis.where.cells:
        return None
    return analysis.lens.value_at(line0 + 1, column, analysis.where.lines)


def lens_markdown(facts: ValueFacts, path: str) -> str:
    """A few lines: what it carries (or why nothing), then the cuts on its way and what each lost."""
    expr = " ".join(facts.expr.split()).replace("`", "'")
    if facts.carries:
        head = f"∇ `{expr}` carries gradient from {', '.join(facts.group_texts())}"
    else:
        head = f"∇ `{expr}` carries no gradient: {facts.why_none}"
    cuts = [f"- {cut.sentence(path)}" for cut in facts.cuts[:MAX_CUTS_SHOWN]]
    if len(facts.cuts) > MAX_CUTS_SHOWN:
        cuts.append(f"- … and {len(facts.cuts) - MAX_CUTS_SHOWN} more cuts")
    return head + ("\n\n" + "\n".join(cuts) if cuts else "")


def value_range(facts: ValueFacts, lines: list[str], encoding: str) -> types.Range:
    sl, sc, el, ec = span_to_lsp(lines, facts.line, facts.column, facts.end_line, facts.end_column, encoding)
    return types.Range(types.Position(sl, sc), types.Position(el, ec))


# ---- code lens ----------------------------------------------------------------------------------------


async def analysis_with_lens(ls: GradtraceServer, uri: str, asked: str, setting: str) -> Analysis | None:
    """The analysis of the document's current version, when it has a lens and `setting` is on for it. `asked`
    ("codeLens", "inlayHint") is remembered: the client may then be asked to refresh it."""
    docs = ls.documents
    key = docs.target_key(uri)
    ls.lens_asked.add(asked)
    if key not in docs.targets or not getattr(ls.config.for_path(docs.path_for(key)), setting):
        return None
    analysis = await docs.ensure(key)
    if analysis is None or analysis.lens is None or analysis.where.cells:
        return None
    return analysis


async def code_lens(ls: GradtraceServer, params: types.CodeLensParams) -> list[types.CodeLens]:
    """LSP handler for textDocument/codeLens: one lens above each loss of the document's current version."""
    analysis = await analysis_with_lens(ls, params.text_document.uri, "codeLens", "lens_enable")
    if analysis is None:
        return []
    out = []
    for sink in analysis.lens.sinks:
        _uri, rng = analysis.where.to_range(sink.line, sink.column, sink.end_line, sink.end_column, ls.encoding)
        out.append(types.CodeLens(range=rng, command=_reveal_command(ls, analysis, sink)))
    return out


def _reveal_command(ls: GradtraceServer, analysis: Analysis, sink: SinkLens) -> types.Command:
    """The lens's title; clicking it shows the cut (a title without a command when nothing was cut)."""
    cut = sink.first_cut
    if cut is None:
        return types.Command(title=sink.title, command="")
    if os.path.abspath(cut.path) == os.path.abspath(analysis.where.path):
        uri, lines = analysis.where.uri, analysis.where.lines
    else:
        uri, lines = from_fs_path(os.path.abspath(cut.path)) or cut.path, file_lines(ls, cut.path) or []
    text = lines[cut.line - 1] if 0 < cut.line <= len(lines) else ""
    start = len(text) - len(text.lstrip()) + 1
    sl, sc, el, ec = span_to_lsp(lines or [""], cut.line, start, cut.line, len(text.rstrip()) + 1, ls.encoding)
    selection = {"start": {"line": sl, "character": sc}, "end": {"line": el, "character": ec}}
    return types.Command(title=sink.title, command=REVEAL_CUT, arguments=[{"uri": uri, "selection": selection}])


async def reveal_cut(ls, *args):  # `ls` unannotated: pygls resolves command annotations at run time
    """workspace/executeCommand `gradtrace.revealCut` [{uri, selection}]: ask the editor to show that place."""
    target = args[0] if args and isinstance(args[0], dict) else {}
    uri, selection = target.get("uri"), target.get("selection")
    try:
        rng = types.Range(types.Position(int(selection["start"]["line"]), int(selection["start"]["character"])),
                          types.Position(int(selection["end"]["line"]), int(selection["end"]["character"])))
    except (KeyError, TypeError, ValueError):
        rng = None
    if not isinstance(uri, str) or rng is None:
        raise JsonRpcInvalidParams(f'{REVEAL_CUT} expects [{{"uri": ..., "selection": {{"start": ..., "end": ...}}}}]')
    window = ls.client_capabilities.window
    if not (window and window.show_document and window.show_document.support):
        return {"success": False, "reason": "the editor cannot be asked to show a document (window/showDocument)"}
    result = await ls.window_show_document_async(types.ShowDocumentParams(uri=uri, take_focus=True, selection=rng))
    return {"success": bool(result and result.success)}


# ---- inlay hints -----------------------------------------------------------------------------------------


async def inlay_hints(ls: GradtraceServer, params: types.InlayHintParams) -> list[types.InlayHint]:
    """LSP handler for textDocument/inlayHint: `∅∇` after each assignment that lost its gradient on the way to a
    loss, in the requested range."""
    analysis = await analysis_with_lens(ls, params.text_document.uri, "inlayHint", "inlay_hints_enable")
    if analysis is None:
        return []
    first, last = params.range.start.line, params.range.end.line
    out = []
    for hint in analysis.lens.hints:
        _uri, rng = analysis.where.to_range(hint.line, hint.column, hint.line, hint.column, ls.encoding)
        if first <= rng.start.line <= last:
            out.append(types.InlayHint(
                position=rng.start, label=hint.label, padding_left=True,
                tooltip=types.MarkupContent(kind=types.MarkupKind.Markdown,
                                            value=hint.tooltip(analysis.where.path))))
    return out


# ---- refresh ---------------------------------------------------------------------------------------------


def refresh(ls: GradtraceServer) -> None:
    """Ask the client for code lenses and inlay hints again (settings changed, or an imported file did), when it
    has asked for them before and can be asked again."""
    ws = ls.client_capabilities.workspace
    if ws is None:
        return
    try:
        if "codeLens" in ls.lens_asked and ws.code_lens and ws.code_lens.refresh_support:
            ls.workspace_code_lens_refresh(None)
        if "inlayHint" in ls.lens_asked and ws.inlay_hint and ws.inlay_hint.refresh_support:
            ls.workspace_inlay_hint_refresh(None)
    except Exception as exc:
        ls.log(types.MessageType.Warning, f"gradtrace: code lens or inlay hint refresh failed: {exc!r}")


def register(server: GradtraceServer) -> None:
    server.feature(types.TEXT_DOCUMENT_CODE_LENS, types.CodeLensOptions(resolve_provider=False))(code_lens)
    server.feature(types.TEXT_DOCUMENT_INLAY_HINT, types.InlayHintOptions(resolve_provider=False))(inlay_hints)
    server.command(REVEAL_CUT)(reveal_cut)
