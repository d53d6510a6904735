"""Text for a terminal: what a file or an exception says is shown, never obeyed.

Messages quote user code, file names and exception text; a control character in them (an ANSI escape in an
exception message, a carriage return in a name) would be interpreted by the terminal. `printable` shows them as
escapes instead (`\\x1b`), keeping tabs and newlines.
"""

from __future__ import annotations

import re

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
