"""Text for a terminal: what a file, a message or an exception says is shown, never obeyed.

Findings quote user code, file names and exception text; a control character in them (an ANSI escape in an
exception message, a carriage return in a name) would drive the terminal, and a bidi override would reorder what
it shows. `printable` shows them as escapes instead (`\\x1b`, `\\u202e`). It works on one line: newlines and tabs
are escaped too.
"""

from __future__ import annotations

import unicodedata


def printable(text: str) -> str:
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)
