"""Apply every safe fix, re-checking until nothing changes: `gradtrace check --fix` and the editor's fixAll.

A fix can uncover or move another finding (removing one `.detach()` lets the next one be seen), so the
text is checked again after each round of edits, up to `passes` rounds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gradtrace.engine import CheckResult
from gradtrace.fixes.apply import apply_edits

MAX_PASSES = 5


@dataclass
class FixAllResult:
    text: str  # the text after the fixes (the input when nothing applied)
    result: CheckResult  # the check of `text`
    applied: int  # safe fixes applied, over every round


def fix_all(text: str, check: Callable[[str], CheckResult], passes: int = MAX_PASSES,
            on_round: Callable[[str], None] | None = None) -> FixAllResult:
    """Apply the safe fixes `check(text)` reports, and check again, until a round changes nothing.

    `on_round(new_text)` runs after each round that changed the text (the CLI writes the file there).
    """
    result = check(text)
    applied = 0
    for _ in range(passes):
        safe = [f for f in result.findings if f.fix and f.fix.safe]
        if not safe:
            break
        new_text = apply_edits(text, [e for f in safe for e in f.fix.edits])
        if new_text == text:
            break
        applied += len(safe)
        text = new_text
        if on_round is not None:
            on_round(text)
        result = check(text)
    return FixAllResult(text, result, applied)
