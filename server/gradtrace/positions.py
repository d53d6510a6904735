"""The ONE place that converts between position units.

Three units meet in gradtrace:
- UTF-8 bytes: `ast` node `col_offset`/`end_col_offset`;
- code points: our `Finding` columns (1-based) and libcst positions;
- UTF-16 code units: the LSP default (and UTF-8/UTF-32 when negotiated).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from functools import lru_cache

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")  # two UTF-16 code units each

# Every conversion below is linear in C (str.isascii, str.encode, a regex scan), never a Python loop over
# the characters of a line: a 2 MB single-line document must not cost seconds per keystroke.


def split_lines(text: str) -> list[str]:
    """Lines as Python's tokenizer and LSP count them (\\n, \\r\\n and \\r only)."""
    return _LINE_BREAK.split(text) if "\r" in text else text.split("\n")


def byte_col_to_char_col(line_text: str, byte_col: int) -> int:
    """0-based UTF-8 byte column on `line_text` -> 0-based code-point column (a byte inside a character
    gives that character's column)."""
    if line_text.isascii():
        return min(byte_col, len(line_text))
    prefix = line_text.encode("utf-8", "surrogatepass")[:max(byte_col, 0)]
    try:  # a lone surrogate (which a client may send) encodes to 3 bytes and back
        return len(prefix.decode("utf-8", "surrogatepass"))
    except UnicodeDecodeError as exc:  # cut inside a character: the characters before it
        return len(prefix[:exc.start].decode("utf-8", "surrogatepass"))


@lru_cache(maxsize=2)  # the line being edited: converted several times per keystroke
def _astral_columns(line_text: str) -> tuple[int, ...]:
    """Code-point columns of the characters that take two UTF-16 code units."""
    return tuple(match.start() for match in _ASTRAL.finditer(line_text))


def char_col_to_utf16(line_text: str, char_col: int) -> int:
    """0-based code-point column -> 0-based UTF-16 code-unit column."""
    if line_text.isascii():  # O(1): CPython records it
        return char_col
    return char_col + bisect_left(_astral_columns(line_text), char_col)


def utf16_to_char_col(line_text: str, utf16_col: int) -> int:
    """0-based UTF-16 code-unit column -> 0-based code-point column (clamped to the line; a column inside
    a surrogate pair gives the column after that character)."""
    if line_text.isascii():
        return min(utf16_col, len(line_text))
    extra = 0  # astral characters before the current one
    for start in _astral_columns(line_text):
        if utf16_col <= start + extra:
            return utf16_col - extra
        if utf16_col == start + extra + 1:
            return start + 1
        extra += 1
    return min(utf16_col - extra, len(line_text))


def char_col_to_unit(line_text: str, char_col: int, encoding: str) -> int:
    """0-based code-point column -> 0-based column in the negotiated LSP encoding."""
    if encoding == "utf-16":
        return char_col_to_utf16(line_text, char_col)
    if encoding == "utf-8":
        return len(line_text[:char_col].encode("utf-8", "surrogatepass"))
    return char_col  # utf-32: code points


def unit_to_char_col(line_text: str, col: int, encoding: str) -> int:
    """0-based column in the negotiated LSP encoding -> 0-based code-point column."""
    if encoding == "utf-16":
        return utf16_to_char_col(line_text, col)
    if encoding == "utf-8":
        return byte_col_to_char_col(line_text, col)
    return min(col, len(line_text))


class LineIndex:
    """Line texts of a document, for converting `ast` byte columns to code-point columns (split on first use: a
    file read only for its definitions never needs them)."""

    __slots__ = ("_text", "_lines")

    def __init__(self, text: str):
        self._text = text
        self._lines: list[str] | None = None

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = split_lines(self._text)
        return self._lines

    def line(self, lineno: int) -> str:
        """1-based line number -> its text ('' past the end)."""
        lines = self.lines
        return lines[lineno - 1] if 1 <= lineno <= len(lines) else ""

    def char_col(self, lineno: int, byte_col: int) -> int:
        return byte_col_to_char_col(self.line(lineno), byte_col)


# ---- LSP-facing helpers (the language server converts here and nowhere else) ----------------


def span_to_lsp(
    lines: list[str], line: int, column: int, end_line: int, end_column: int, encoding: str
) -> tuple[int, int, int, int]:
    """A 1-based code-point span (a `Finding`, `Edit` or `Related`) -> a 0-based LSP range in `encoding`.

    Returns (start_line, start_character, end_line, end_character). Spans past the end of the
    document are clamped to its end; an end before the start collapses onto the start.
    """
    start = point_to_lsp(lines, line, column, encoding)
    end = point_to_lsp(lines, end_line, end_column, encoding)
    if end < start:
        end = start
    return (*start, *end)


def point_to_lsp(lines: list[str], line: int, column: int, encoding: str) -> tuple[int, int]:
    """1-based line and code-point column -> 0-based LSP (line, character) in `encoding`, clamped."""
    if not lines:
        return (0, 0)
    if line < 1:
        return (0, 0)
    if line > len(lines):
        last = len(lines) - 1
        return (last, char_col_to_unit(lines[last], len(lines[last]), encoding))
    text = lines[line - 1]
    col = min(max(column - 1, 0), len(text))
    return (line - 1, char_col_to_unit(text, col, encoding))


def lsp_to_point(lines: list[str], line: int, character: int, encoding: str) -> tuple[int, int]:
    """0-based LSP (line, character) in `encoding` -> 1-based line and code-point column, clamped."""
    if not lines or line < 0:
        return (1, 1)
    if line >= len(lines):
        return (len(lines), len(lines[-1]) + 1)
    return (line + 1, unit_to_char_col(lines[line], max(character, 0), encoding) + 1)


def unit_length(text: str, encoding: str) -> int:
    """Length of `text` in `encoding` units (for whole-line LSP ranges)."""
    return char_col_to_unit(text, len(text), encoding)
