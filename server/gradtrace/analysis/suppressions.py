"""The `# noqa` grammar (flake8's), in one place: the engine, the hover and the code actions read it here.

- `# noqa` suppresses every finding on its line;
- `# noqa: GT105` or `# noqa:GT105, GT120` suppresses those codes (separated by commas and/or spaces);
- the comment may follow other text (`x = f()  # keep this  # noqa: GT105`); case is ignored.

A finding is suppressed by a `# noqa` on its first or its last line. Columns here are 0-based code points.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gradtrace.records import record

CODE_PATTERN = r"[A-Z]+[0-9]+"
NOQA = re.compile(rf"#\s*noqa(?::\s*(?P<codes>{CODE_PATTERN}(?:[,\s]+{CODE_PATTERN})*))?", re.I)
CODE = re.compile(CODE_PATTERN, re.I)


@record(frozen=True)
class Noqa:
    """One `# noqa` comment on a line."""

    start: int  # column of its `#`
    codes: tuple[tuple[str, int, int], ...] | None  # (CODE, start, end) per code; None: every code
    codes_end: int | None  # column just after the last code (where another one is appended)

    @property
    def code_names(self) -> frozenset[str] | None:
        return None if self.codes is None else frozenset(code for code, _s, _e in self.codes)


def find_noqa(line: str) -> Noqa | None:
    """The `# noqa` comment on `line`, if any."""
    if "q" not in line and "Q" not in line:  # two C scans; lower() would copy the line
        return None
    match = NOQA.search(line)
    if match is None:
        return None
    if match.group("codes") is None:
        return Noqa(match.start(), None, None)
    base = match.start("codes")
    codes = tuple((m.group(0).upper(), base + m.start(), base + m.end()) for m in CODE.finditer(match.group("codes")))
    return Noqa(match.start(), codes, match.end("codes"))


def line_suppressions(lines: Iterable[str]) -> dict[int, frozenset[str] | None]:
    """1-based line -> the codes its `# noqa` suppresses (None: every code), for lines that have one."""
    result: dict[int, frozenset[str] | None] = {}
    for lineno, text in enumerate(lines, start=1):
        noqa = find_noqa(text)
        if noqa is not None:
            result[lineno] = noqa.code_names
    return result


def is_suppressed(suppressions: dict[int, frozenset[str] | None], code: str, line: int, end_line: int) -> bool:
    """Whether a finding of `code` spanning `line`..`end_line` is suppressed."""
    for lineno in (line, end_line):
        if lineno in suppressions:
            codes = suppressions[lineno]
            if codes is None or code in codes:
                return True
    return False


def code_at(line: str, column: int) -> tuple[str, int, int] | None:
    """(CODE, start, end) of the rule code under `column` in the line's `# noqa: ...`, if any."""
    noqa = find_noqa(line)
    if noqa is None or noqa.codes is None:
        return None
    for code, start, end in noqa.codes:
        if start <= column <= end:
            return code, start, end
    return None


def suppression_insert(comment_tail: str, code: str) -> tuple[int, str] | None:
    """How to suppress `code` on a line whose comment is `comment_tail` (the line from its `#` on; '' if none).

    Returns (column in `comment_tail` to insert at, text to insert), where a column of -1 means "at the end
    of the line's code"; None when the line already suppresses `code`.
    """
    noqa = find_noqa(comment_tail) if comment_tail else None
    if noqa is None:
        return -1, f"  # noqa: {code}"
    names = noqa.code_names
    if names is None or code in names:
        return None
    return noqa.codes_end, f", {code}"
