"""Code actions: the fix a diagnostic carries, "Disable GTxxx for this line", and fixAll.

Quick fixes are read from `Diagnostic.data` (edits already in client units); only when the
client's diagnostic is older than the document is the current analysis consulted. fixAll applies
every safe fix (re-checking until nothing changes, like `gradtrace check --fix`) and returns one
edit spanning the changed lines, so the rest of the buffer (and the cursor) is left alone.
"""

from __future__ import annotations

import asyncio
import io
import tokenize
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from gradtrace.analysis.suppressions import suppression_insert
from gradtrace.lsp.diagnostics import SOURCE, SOURCES
from gradtrace.lsp.worker import run_fix_all
from gradtrace.positions import point_to_lsp, span_to_lsp, split_lines

if TYPE_CHECKING:
    from gradtrace.lsp.server import GradtraceServer

FIX_ALL_KIND = "source.fixAll.gradtrace"
FIX_ALL_TITLE = "gradtrace: Fix all safe problems"
NOT_SUPPRESSIBLE = ("GT000", "GT001")


def kind_allowed(kind: str, only: list[str] | None) -> bool:
    if not only:
        return True
    return any(kind == o or kind.startswith(str(o) + ".") for o in only)


# ---- "Disable GTxxx for this line" ----------------------------------------------------------


def _scan_line(text: str) -> tuple[int | None, bool]:
    """(column of a comment '#', whether the line ends inside a string or with a continuation)."""
    i, n = 0, len(text)
    quote: str | None = None
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if text.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
            i += 1
            continue
        if ch == "#":
            return i, False
        if ch in "'\"":
            quote = ch * 3 if text.startswith(ch * 3, i) else ch
            i += len(quote)
            continue
        i += 1
    open_end = quote is not None or text.rstrip().endswith("\\")
    return None, open_end


def _comment_line_ok(text: str, line0: int, source: str | None) -> tuple[int | None, bool]:
    """Like `_scan_line`, but for a line that may start inside a multi-line string: ask tokenize."""
    if source is None:
        return _scan_line(text)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return None, True
    comment = None
    for tok in tokens:
        (sl, sc), (el, _ec) = tok.start, tok.end
        if tok.type == tokenize.COMMENT and sl == line0 + 1:
            comment = sc
        if tok.type == tokenize.STRING and sl <= line0 + 1 < el:
            return None, True  # the line ends inside a string
        if sl > line0 + 1:
            break
    return comment, text.rstrip().endswith("\\")


def noqa_edit(lines: list[str], source: str, start0: int, end0: int, code: str, encoding: str) -> types.TextEdit | None:
    """Insert `# noqa: CODE` on the finding's first line (else its last), or add CODE to one there."""
    for attempt, line0 in enumerate(dict.fromkeys((start0, end0))):
        if not 0 <= line0 < len(lines):
            continue
        text = lines[line0]
        comment, open_end = _scan_line(text) if attempt == 0 else _comment_line_ok(text, line0, source)
        if open_end:
            continue
        insert = suppression_insert(text[comment:] if comment is not None else "", code)
        if insert is None:
            return None
        column, new_text = insert
        if column >= 0:
            col = comment + column
            sl, sc, _el, _ec = span_to_lsp(lines, line0 + 1, col + 1, line0 + 1, col + 1, encoding)
            return types.TextEdit(types.Range(types.Position(sl, sc), types.Position(sl, sc)), new_text)
        end = len(text.rstrip())
        sl, sc, el, ec = span_to_lsp(lines, line0 + 1, end + 1, line0 + 1, len(text) + 1, encoding)
        return types.TextEdit(types.Range(types.Position(sl, sc), types.Position(el, ec)), new_text)
    return None


# ---- workspace edits ---------------------------------------------------------------------------


def workspace_edit(ls: GradtraceServer, edits: dict[str, list[types.TextEdit]]) -> types.WorkspaceEdit:
    caps = ls.client_capabilities.workspace
    if caps and caps.workspace_edit and caps.workspace_edit.document_changes:
        changes = []
        for uri, items in edits.items():
            version = ls.documents.doc_version(uri)
            changes.append(types.TextDocumentEdit(
                text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version), edits=items))
        return types.WorkspaceEdit(document_changes=changes)
    return types.WorkspaceEdit(changes=edits)


def well_formed_fix(fix) -> bool:
    """Whether a diagnostic's `data.fix`, back from the client, has the shape `fix_data` gave it."""
    def position(p) -> bool:
        return isinstance(p, dict) and all(isinstance(p.get(k), int) and not isinstance(p.get(k), bool)
                                           and p[k] >= 0 for k in ("line", "character"))

    return (isinstance(fix, dict) and isinstance(fix.get("title"), str) and isinstance(fix.get("edits"), list)
            and all(isinstance(e, dict) and isinstance(e.get("uri"), str) and isinstance(e.get("newText"), str)
                    and isinstance(e.get("range"), dict) and position(e["range"].get("start"))
                    and position(e["range"].get("end")) for e in fix["edits"]))


def _text_edits(fix: dict) -> dict[str, list[types.TextEdit]]:
    out: dict[str, list[types.TextEdit]] = {}
    for e in fix.get("edits", []):
        r = e["range"]
        rng = types.Range(types.Position(r["start"]["line"], r["start"]["character"]),
                          types.Position(r["end"]["line"], r["end"]["character"]))
        out.setdefault(e["uri"], []).append(types.TextEdit(rng, e["newText"]))
    return out


def _same_range(a: types.Range, b: types.Range) -> bool:
    return (a.start.line, a.start.character, a.end.line, a.end.character) == (
        b.start.line, b.start.character, b.end.line, b.end.character)


# ---- fixAll ------------------------------------------------------------------------------------


def fix_all_edit(text: str, fixed: str, encoding: str) -> types.TextEdit | None:
    """One edit turning `text` into `fixed`, spanning only the lines that differ (None when equal)."""
    if fixed == text:
        return None
    old, new = text.split("\n"), fixed.split("\n")
    i = 0
    while i < min(len(old), len(new)) and old[i] == new[i]:
        i += 1
    j = 0
    while j < min(len(old), len(new)) - i and old[-1 - j] == new[-1 - j]:
        j += 1
    lines = split_lines(text)
    if j > 0:
        start, end = (i, 0), (len(old) - j, 0)
        replacement = "".join(line + "\n" for line in new[i:len(new) - j])
    else:
        i = min(i, len(old) - 1, len(new) - 1)
        start = (i, 0)
        end = point_to_lsp(lines, len(old), len(old[-1]) + 1, encoding)
        replacement = "\n".join(new[i:])
    return types.TextEdit(types.Range(types.Position(*start), types.Position(*end)), replacement)


async def compute_fix_all(ls: GradtraceServer, uri: str) -> types.WorkspaceEdit | None:
    doc = ls.workspace.get_text_document(uri)
    text = doc.source
    path = ls.documents.path_for(uri)
    lint, _ = ls.config.lint_for(path)
    job = {"text": text, "path": path, "lint": lint, "root": ls.project_root(path)}
    loop = asyncio.get_running_loop()
    fixed = await loop.run_in_executor(ls.analysis_pool, ls.worker.call, run_fix_all, job)
    edit = fix_all_edit(text, fixed, ls.encoding)
    if edit is None:
        return None
    return workspace_edit(ls, {uri: [edit]})


# ---- handlers ----------------------------------------------------------------------------------


async def code_action(ls: GradtraceServer, params: types.CodeActionParams) -> list[types.CodeAction] | None:
    """LSP handler for textDocument/codeAction."""
    uri = params.text_document.uri
    docs = ls.documents
    try:
        doc = ls.workspace.get_text_document(uri)
    except Exception:
        return None
    key = docs.target_key(uri)
    settings = ls.config.for_path(docs.path_for(key))
    only = params.context.only
    actions: list[types.CodeAction] = []
    if kind_allowed(types.CodeActionKind.QuickFix, only):
        lines = None
        current = None
        for diagnostic in params.context.diagnostics:
            if diagnostic.source not in SOURCES:
                continue
            data = diagnostic.data if isinstance(diagnostic.data, dict) else {}
            code = str(data.get("code") or diagnostic.code or "")
            fix = data.get("fix")
            if fix is not None and not well_formed_fix(fix):
                raise JsonRpcInvalidParams(f"the data of a {code or 'gradtrace'} diagnostic is not the fix this "
                                           "server sent (diagnostics must be sent back unchanged)")
            if "fix" not in data or (key == uri and data.get("version") not in (None, doc.version)):
                # older than the document (or the client dropped `data`): trust only what the
                # current analysis still reports at that range
                current = current or await docs.ensure(key)
                match = next((d for d, _f in (current.diagnostics.get(uri, []) if current else [])
                              if d.code == diagnostic.code and _same_range(d.range, diagnostic.range)), None)
                if match is None:
                    continue
                fix = match.data.get("fix")
            if fix and settings.code_action_fix_violation:
                actions.append(types.CodeAction(
                    title=f"gradtrace ({code}): {fix['title']}",
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diagnostic],
                    is_preferred=True if fix.get("safe") else None,
                    edit=workspace_edit(ls, _text_edits(fix)),
                ))
            if (settings.code_action_disable_rule_comment and diagnostic.source == SOURCE
                    and code and code not in NOT_SUPPRESSIBLE):
                lines = lines if lines is not None else split_lines(doc.source)
                edit = noqa_edit(lines, doc.source, diagnostic.range.start.line, diagnostic.range.end.line,
                                 code, ls.encoding)
                if edit is not None:
                    actions.append(types.CodeAction(
                        title=f"gradtrace ({code}): Disable {code} for this line",
                        kind=types.CodeActionKind.QuickFix,
                        diagnostics=[diagnostic],
                        edit=workspace_edit(ls, {uri: [edit]}),
                    ))
    if settings.fix_all and key == uri and kind_allowed(FIX_ALL_KIND, only):
        analysis = docs.analyses.get(key)
        if analysis is None or analysis.version != docs.current_version(key):
            analysis = await docs.ensure(key)
        if analysis is not None and analysis.has_safe_fix:
            action = types.CodeAction(title=FIX_ALL_TITLE, kind=FIX_ALL_KIND,
                                      data={"uri": uri, "version": doc.version, "kind": "fixAll"})
            if not ls.supports_resolve("edit"):
                action.edit = await compute_fix_all(ls, uri)
                action.data = None
            if action.edit is not None or action.data is not None:
                actions.append(action)
    return actions


async def resolve_code_action(ls: GradtraceServer, action: types.CodeAction) -> types.CodeAction:
    """LSP handler for codeAction/resolve: fixAll edits are computed only when chosen."""
    data = action.data if isinstance(action.data, dict) else {}
    if data.get("kind") == "fixAll" and isinstance(data.get("uri"), str) and data["uri"] in ls.documents.targets:
        action.edit = await compute_fix_all(ls, data["uri"]) or types.WorkspaceEdit(changes={})
    return action


def register(server: GradtraceServer) -> None:
    server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix, FIX_ALL_KIND],
                                resolve_provider=True),
    )(code_action)
    server.feature(types.CODE_ACTION_RESOLVE)(resolve_code_action)
