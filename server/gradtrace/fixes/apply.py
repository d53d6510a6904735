"""Apply `Edit`s (1-based lines, code-point columns) to a text."""

from __future__ import annotations

from gradtrace.findings import Edit
from gradtrace.positions import split_lines


def _offsets(text: str) -> list[int]:
    """Start offset (code points) of every line, including line-break characters."""
    starts = [0]
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\r":
            if i + 1 < n and text[i + 1] == "\n":
                i += 1
            starts.append(i + 1)
        elif ch == "\n":
            starts.append(i + 1)
        i += 1
    return starts


def apply_edits(text: str, edits: list[Edit] | tuple[Edit, ...]) -> str:
    """Apply non-overlapping edits; overlapping later ones are dropped."""
    starts = _offsets(text)
    lines = split_lines(text)

    def off(line: int, col: int) -> int:
        if line - 1 >= len(starts):
            return len(text)
        return starts[line - 1] + min(col - 1, len(lines[line - 1]))

    spans = sorted(((off(e.line, e.column), off(e.end_line, e.end_column), e.text) for e in edits), key=lambda s: s[:2])
    out = []
    pos = 0
    for start, end, new in spans:
        if start < pos:
            continue  # overlaps an earlier edit
        out.append(text[pos:start])
        out.append(new)
        pos = end
    out.append(text[pos:])
    return "".join(out)
