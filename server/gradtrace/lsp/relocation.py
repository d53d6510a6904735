"""Moving findings to where their code is in a newer text, without analysing it again (pure functions).

- `relocate`: a finding whose lines moved as a block (the probe's findings, after an edit elsewhere);
- `through_layout_edit`: every finding of a text, after an edit that changed only comments or whitespace
  between tokens (same tokens in the same order, same indentation): re-analysing would give the same
  findings, so they are mapped token by token instead. None when the edit changed code, touched a
  `# noqa`, moved a position that is not on a token boundary, or moved lines that a message names by
  number (then the text is analysed again).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize

from gradtrace import records
from gradtrace.findings import Edit, Finding, Fix, Related
from gradtrace.records import record

RELOCATE_WINDOW = 400  # lines searched when re-anchoring a finding
LINE_NUMBER = re.compile(r"\blines? \d", re.I)
LAYOUT_TOKENS = (tokenize.COMMENT, tokenize.NL)
STRUCTURE_TOKENS = (tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE, tokenize.ENDMARKER)


def relocate(finding: Finding, old: list[str], new: list[str]) -> Finding | None:
    """`finding` moved to where its lines now are (same text), or None when they are gone."""
    first, last = finding.line - 1, finding.end_line - 1
    if not (0 <= first <= last < len(old)):
        return None
    block = old[first:last + 1]
    for distance in range(RELOCATE_WINDOW):
        for start in {first - distance, first + distance}:
            if 0 <= start and start + len(block) <= len(new) and new[start:start + len(block)] == block:
                return shift(finding, start - first, old, new)
    return None


def shift(finding: Finding, delta: int, old: list[str], new: list[str]) -> Finding:
    """`finding` `delta` lines down; fix edits and related places whose lines changed are dropped."""
    def same(line: int) -> bool:
        return 0 < line <= len(old) and 0 < line + delta <= len(new) and old[line - 1] == new[line + delta - 1]

    fix = finding.fix
    if fix is not None:
        if all(same(e.line) and same(e.end_line) for e in fix.edits):
            fix = Fix(fix.title, fix.safe, tuple(records.replace(e, line=e.line + delta, end_line=e.end_line + delta)
                                                 for e in fix.edits))
        else:
            fix = None
    related = [records.replace(r, line=r.line + delta, end_line=r.end_line + delta)
               if r.path == finding.path and same(r.line) else r
               for r in finding.related if r.path != finding.path or same(r.line)]
    return records.replace(finding, line=finding.line + delta, end_line=finding.end_line + delta, fix=fix,
                               related=related)


# ---- edits that change only comments and whitespace ---------------------------------------------


def through_layout_edit(findings: list[Finding], old_outline: Outline, old: list[str], new: list[str]) -> list[Finding] | None:
    """`findings` of the text `old` (whose statements are `old_outline`) mapped onto `new`, or None (see the
    module doc)."""
    return findings_through(layout_move(old_outline, old, new), findings)


def findings_through(moving: LayoutMove | None, findings: list[Finding]) -> list[Finding] | None:
    """`findings` moved through a layout-only edit (`layout_move`), or None."""
    if moving is None:
        return None
    if moving.delta and any(_names_a_line(f) for f in findings):
        return None  # "... on line 15" would now be wrong: analyse again
    try:
        return [_moved(f, moving.move) for f in findings]
    except Unmappable:
        return None


class Unmappable(Exception):
    """A position of the old text is not on a token boundary of the edited window."""


@record
class LayoutMove:
    """How positions of a text move through an edit of its comments and whitespace only."""

    first: int  # the edited window, 1-based lines of the old text (inclusive)
    last: int
    delta: int  # lines added (negative: removed)
    starts: dict  # old (line, col0) -> new (line, col0) of each token start in the window
    ends: dict
    line_moves: dict  # old line -> new line, in the window
    old: list[str]
    new: list[str]

    def line_after(self, line: int) -> int | None:
        """Where the old text's `line` is in the new text (None: a line of the window that holds no code)."""
        if line < self.first:
            return line
        if line > self.last:
            return line + self.delta
        return self.line_moves.get(line)

    def move(self, line: int, column: int, end: bool = False) -> tuple[int, int]:
        """(1-based line, 1-based column) in the old text -> the same place in the new one; raises `Unmappable`."""
        if line < self.first:
            return line, column
        if line > self.last:
            return line + self.delta, column
        for table in ((self.ends, self.starts) if end else (self.starts, self.ends)):
            if (line, column - 1) in table:
                new_line, new_col = table[(line, column - 1)]
                return new_line, new_col + 1
        if line in self.line_moves:  # a whole-line span: from the code's start, or to the end of the line
            new_line = self.line_moves[line]
            old_text, new_text = self.old[line - 1], self.new[new_line - 1]
            if column == len(old_text.rstrip()) + 1:
                return new_line, len(new_text.rstrip()) + 1
            if column == len(old_text) + 1:
                return new_line, len(new_text) + 1
        raise Unmappable


def layout_move(old_outline: Outline, old: list[str], new: list[str]) -> LayoutMove | None:
    """The mapping of positions from `old` to `new` when the edit between them changed only comments or
    whitespace (and no `# noqa`); None otherwise."""
    prefix = 0
    limit = min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    if prefix == len(old) == len(new):
        return LayoutMove(len(old) + 1, len(old), 0, {}, {}, {}, old, new)
    suffix = 0
    while suffix < limit - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    changed_old = old[prefix:len(old) - suffix]
    changed_new = new[prefix:len(new) - suffix]
    if any("noqa" in line.lower() for line in changed_old + changed_new):
        return None
    first, last = _window(old_outline, prefix + 1, len(old) - suffix)  # 1-based, inclusive, in `old`
    delta = len(new) - len(old)
    old_tokens = _code_tokens(old[first - 1:last])
    new_tokens = _code_tokens(new[first - 1:last + delta])
    if old_tokens is None or new_tokens is None or [t[:2] for t in old_tokens] != [t[:2] for t in new_tokens]:
        return None
    moving = LayoutMove(first, last, delta, {}, {}, {}, old, new)
    for (kind, _, (osl, osc), (oel, oec)), (_, _, (nsl, nsc), (nel, nec)) in zip(old_tokens, new_tokens):
        if kind in STRUCTURE_TOKENS:
            continue
        moving.starts[(osl + first - 1, osc)] = (nsl + first - 1, nsc)
        moving.ends[(oel + first - 1, oec)] = (nel + first - 1, nec)
        moving.line_moves.setdefault(osl + first - 1, nsl + first - 1)
        moving.line_moves.setdefault(oel + first - 1, nel + first - 1)
    return moving


def _names_a_line(finding: Finding) -> bool:
    return any(LINE_NUMBER.search(text) for text in [finding.message] + [r.message for r in finding.related])


def _moved(finding: Finding, move) -> Finding:
    line, column = move(finding.line, finding.column)
    end_line, end_column = move(finding.end_line, finding.end_column, True)
    fix = finding.fix
    if fix is not None:
        edits = []
        for e in fix.edits:
            el, ec = move(e.line, e.column)
            eel, eec = move(e.end_line, e.end_column, True)
            edits.append(Edit(el, ec, eel, eec, e.text))
        fix = Fix(fix.title, fix.safe, tuple(edits))
    related = []
    for r in finding.related:
        if r.path == finding.path:
            rl, rc = move(r.line, r.column)
            rel, rec = move(r.end_line, r.end_column, True)
            r = Related(r.path, rl, rc, rel, rec, r.message)
        related.append(r)
    return records.replace(finding, line=line, column=column, end_line=end_line, end_column=end_column, fix=fix,
                               related=related)


Outline = list  # [(first line, last line, [blocks: Outline, ...]), ...]: a text's statements, by line


def outline(tree: ast.Module) -> Outline:
    """The statements of a parsed text as nested line ranges (what `through_layout_edit` keeps of a tree)."""
    def of(body: list[ast.stmt]) -> Outline:
        return [(_start(s), s.end_lineno or s.lineno, [of(block) for block in _blocks(s) if block]) for s in body]

    return of(tree.body)


def _window(statements: Outline, first: int, last: int) -> tuple[int, int]:
    """The smallest run of whole statements (at one nesting level) around lines `first`..`last`.

    `last` may be `first - 1` (lines inserted, none replaced)."""
    low, high = min(first, last), max(first, last)
    window = (max(1, low), high)
    while statements:
        touching = [(a, b, blocks) for a, b, blocks in statements if a <= high and b >= low]
        if not touching:
            return window
        start, end = min(a for a, _b, _s in touching), max(b for _a, b, _s in touching)
        window = (min(start, low), max(end, high))
        if len(touching) != 1 or not (start < low and high <= end):
            return window
        # one compound statement holds the whole edit below its first line: look inside its blocks
        blocks = touching[0][2]
        statements = next((block for block in blocks if block[0][0] <= high and block[-1][1] >= low), [])
    return window


def _blocks(stmt: ast.stmt) -> list[list[ast.stmt]]:
    blocks = [getattr(stmt, name) for name in ("body", "orelse", "finalbody") if isinstance(getattr(stmt, name, None), list)]
    blocks += [handler.body for handler in getattr(stmt, "handlers", [])]
    blocks += [case.body for case in getattr(stmt, "cases", [])]
    return blocks


def _start(stmt: ast.stmt) -> int:
    return min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", None) or []])


def _code_tokens(lines: list[str]) -> list[tuple] | None:
    """(type, string, start, end) of every token that is not a comment or a blank line's break; None if it
    does not tokenize."""
    text = "\n".join(lines) + "\n"
    try:
        return [(t.type, t.string, t.start, t.end) for t in tokenize.generate_tokens(io.StringIO(text).readline)
                if t.type not in LAYOUT_TOKENS]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
