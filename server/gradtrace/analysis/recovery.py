"""Syntax-error recovery: analyse everything around the statement being typed.

When a document does not parse, the statements that hold the errors are set aside and the rest is
analysed, so that typing `for p in self.parameters()` (before the `:`) inside one method leaves the
findings of every other statement in place. A statement is set aside by replacing its lines: its first
line becomes `pass` at its indentation (so the block around it stays valid), the others become empty.
Every other line keeps its text and its number, so every position in the findings stays right.

The smallest statement is tried first: the simple statement the error is on, then each enclosing
compound statement, out to the top-level statement (a decorated definition, or an `if`/`try` with all
its clauses). A candidate is kept when the parser's next error (if any) is elsewhere; then that one is
recovered the same way. Statements are found by a tolerant scan of brackets, strings and indentation
that does not need the text to tokenize.
"""

from __future__ import annotations

import ast
import re

from gradtrace import parsing
from gradtrace.analysis.source import UNNAMED
from gradtrace.records import field, record

MAX_PARSES = 16  # per document version: a typo costs a few parses, never a parse per statement
BLOCK_AFTER = re.compile(r"expected an indented block after .* on line (\d+)")
CLAUSES = ("elif", "else", "except", "finally")
OPENERS, CLOSERS = "([{", ")]}"


@record
class Statement:
    """A logical line (1-based, inclusive) and, for a compound statement, the statements of its body."""

    first: int
    last: int
    indent: int
    keyword: str
    margin: str = ""  # the first line's leading whitespace, as written (spaces or tabs)
    body: list[Statement] = field(default_factory=list)
    clauses: list[Statement] = field(default_factory=list)  # elif/else/except/finally that follow it

    @property
    def end(self) -> int:
        """The last line of the statement with its body and clauses."""
        last = self.last
        for child in self.body:
            last = max(last, child.end)
        for clause in self.clauses:
            last = max(last, clause.end)
        return last


@record
class Recovery:
    text: str  # the document with the set-aside statements replaced (same lines, same positions)
    tree: ast.Module
    set_aside: list[tuple[int, int]]  # 1-based inclusive line ranges that were replaced


def recover(lines: list[str], error: SyntaxError) -> Recovery | None:
    """The document (its lines) minus the statements that hold its syntax errors, parsed; None when
    nothing parses."""
    if not error.lineno:
        return None
    statements = scan(lines)
    current = list(lines)
    set_aside: list[tuple[int, int]] = []
    parses = 0
    while parses < MAX_PARSES:
        candidates = _candidates(statements, error, len(current))
        accepted = False
        for first, last, replacement in candidates:
            if parses >= MAX_PARSES:
                return None
            trial = current[:first - 1] + replacement + current[last:]
            parses += 1
            try:
                tree = parsing.parse("\n".join(trial), filename=UNNAMED)
            except SyntaxError as exc:
                if exc.lineno and not first <= exc.lineno <= last and (exc.lineno, exc.msg) != (error.lineno, error.msg):
                    current, error, accepted = trial, exc, True  # this one is fixed; recover the next
                    set_aside.append((first, last))
                    break
                continue
            except (RecursionError, MemoryError, ValueError):
                return None
            set_aside.append((first, last))
            return Recovery("\n".join(trial), tree, set_aside)
        if not accepted:
            return None
    return None


def _candidates(statements: list[Statement], error: SyntaxError, line_count: int) -> list[tuple[int, int, list[str]]]:
    """(first, last, replacement lines) to try for `error`, smallest statement first."""
    line = min(max(1, error.lineno or 1), max(1, line_count))
    ordered = list(reversed(_enclosing(statements, line)))
    block_after = BLOCK_AFTER.search(str(error.msg))
    if block_after:  # `for p in params:` with no body yet: set the header aside, not its neighbour
        ordered = list(reversed(_enclosing(statements, int(block_after.group(1)))))[:1] + ordered
    if not ordered:  # no statement on that line (past the end, or in a run of comments): the one before
        ordered = [s for s in _flatten(statements) if s.first <= line][-1:]
    top_level = {id(s) for s in statements}
    result = []
    for stmt in ordered:
        span = stmt.end - stmt.first + 1
        if id(stmt) not in top_level:  # keep the block around it valid
            result.append((stmt.first, stmt.end, [stmt.margin + "pass"] + [""] * (span - 1)))
        result.append((stmt.first, stmt.end, [""] * span))
    return result


def _enclosing(statements: list[Statement], line: int) -> list[Statement]:
    """The statements containing `line`, outermost first (a compound statement with its clauses is one)."""
    chain: list[Statement] = []
    level = statements
    while True:
        found = next((s for s in level if s.first <= line <= s.end), None)
        if found is None:
            return chain
        chain.append(found)
        if found.first <= line <= found.last:
            return chain
        if any(clause.first <= line <= clause.end for clause in found.clauses):
            clause = next(c for c in found.clauses if c.first <= line <= c.end)
            if clause.first <= line <= clause.last:
                return chain  # on a clause's header: the compound statement as a whole
            level = clause.body
        else:
            level = found.body


def _flatten(statements: list[Statement]) -> list[Statement]:
    out = []
    for stmt in statements:
        out.append(stmt)
        out.extend(_flatten(stmt.body))
        for clause in stmt.clauses:
            out.extend(_flatten(clause.body))
    return out


# ---- the tolerant scan ---------------------------------------------------------------------------


def scan(lines: list[str]) -> list[Statement]:
    """The document's statements as a tree by indentation (tolerates unclosed brackets and strings)."""
    logical = _logical_lines(lines)
    root: list[Statement] = []
    stack: list[Statement] = []  # open compound statements (their headers end with ':')
    for stmt, opens_block in logical:
        while stack and stack[-1].indent >= stmt.indent:
            stack.pop()
        siblings = stack[-1].body if stack else root
        if stmt.keyword in CLAUSES and siblings and siblings[-1].indent == stmt.indent:
            siblings[-1].clauses.append(stmt)
        elif siblings and siblings[-1].keyword.startswith("@") and siblings[-1].indent == stmt.indent:
            decorated = siblings[-1]  # a decorator and what it decorates are one statement
            decorated.last = stmt.last
            decorated.keyword = stmt.keyword
            stmt = decorated
        else:
            siblings.append(stmt)
        if opens_block:
            stack.append(stmt)
    return root


def _logical_lines(lines: list[str]) -> list[tuple[Statement, bool]]:
    """(statement, whether it opens a block) per logical line."""
    out: list[tuple[Statement, bool]] = []
    depth = 0
    string: str | None = None  # the open triple-quote string's delimiter
    current: Statement | None = None
    last_significant = ""
    for number, text in enumerate(lines, start=1):
        stripped = text.lstrip()
        indent = len(text) - len(stripped)
        if current is not None and string is None and depth > 0 and _starts_statement(stripped, indent, current):
            depth = 0  # an unclosed bracket: this line is not its continuation
            out.append((current, last_significant.endswith(":")))
            current = None
        if current is None:
            if not stripped or stripped.startswith("#"):
                continue
            keyword = "@" if stripped.startswith("@") else re.match(r"\w*", stripped).group(0)
            current = Statement(number, number, indent, keyword, text[:indent])
        if stripped or string is not None:
            current.last = number
        depth, string, code = _scan_line(text, depth, string)
        if code.strip():
            last_significant = code.rstrip()
        if depth == 0 and string is None and not code.rstrip().endswith("\\"):
            out.append((current, last_significant.endswith(":")))
            current = None
    if current is not None:
        out.append((current, last_significant.endswith(":")))
    return out


def _starts_statement(stripped: str, indent: int, current: Statement) -> bool:
    """Inside an unclosed bracket: does this line start a new statement rather than continue the bracket?"""
    return bool(stripped) and indent <= current.indent and stripped[0] not in CLOSERS and stripped[0] != "#"


def _scan_line(text: str, depth: int, string: str | None) -> tuple[int, str | None, str]:
    """Bracket depth and open triple-quoted string after `text`, and the line's code without comments."""
    code = []
    i, n = 0, len(text)
    while i < n:
        if string is not None:
            end = text.find(string, i)
            while end > 0 and _escaped(text, end):
                end = text.find(string, end + 1)
            if end < 0:
                return depth, string, "".join(code)
            i = end + 3
            string = None
            code.append("''")
            continue
        ch = text[i]
        if ch == "#":
            break
        if ch in "'\"":
            if text.startswith(ch * 3, i):
                string = ch * 3
                i += 3
                continue
            end = i + 1
            while end < n and text[end] != ch:
                end += 2 if text[end] == "\\" else 1
            code.append("''")
            i = end + 1
            continue
        if ch in OPENERS:
            depth += 1
        elif ch in CLOSERS:
            depth = max(0, depth - 1)
        code.append(ch)
        i += 1
    return depth, string, "".join(code)


def _escaped(text: str, index: int) -> bool:
    backslashes = 0
    while index - backslashes - 1 >= 0 and text[index - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1
