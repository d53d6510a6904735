"""Apply every safe fix, re-checking until nothing changes: `gradtrace check --fix` and the editor's fixAll.

A fix can uncover or move another finding (removing one `.detach()` lets the next one be seen), so the
text is checked again after each round of edits, up to `passes` rounds.
"""

from __future__ import annotations

from collections.abc import Callable

from gradtrace.engine import CheckResult
from gradtrace.fixes.apply import apply_edits
from gradtrace.records import record

MAX_PASSES = 5


@record
class FixAllResult:
    text: str  # the text after the fixes (the input when nothing applied)
    result: CheckResult  # the check of `text`
    applied: int  # safe fixes applied, over every round


def fix_until_stable(check: Callable[[], CheckResult], apply: Callable[[list], bool], passes: int = MAX_PASSES,
                     on_round: Callable[[], None] | None = None) -> tuple[CheckResult, int]:
    """The loop itself, over any document: `check()` its current state, `apply(edits)` the safe fixes
    (False when nothing changed), again until a round changes nothing. Returns the last check and how many
    fixes were applied; `on_round()` runs after each round that changed the document."""
    result = check()
    applied = 0
    for _ in range(passes):
        safe = [f for f in result.findings if f.fix and f.fix.safe]
        if not safe or not apply([e for f in safe for e in f.fix.edits]):
            break
        applied += len(safe)
        if on_round is not None:
            on_round()
        result = check()
    return result, applied


def fix_all(text: str, check: Callable[[str], CheckResult], passes: int = MAX_PASSES,
            on_round: Callable[[str], None] | None = None) -> FixAllResult:
    """Apply the safe fixes `check(text)` reports to a text, and check again, until a round changes nothing.

    `on_round(new_text)` runs after each round that changed the text (the CLI writes the file there).
    """
    current = [text]

    def apply(edits: list) -> bool:
        new_text = apply_edits(current[0], edits)
        changed = new_text != current[0]
        current[0] = new_text
        return changed

    result, applied = fix_until_stable(lambda: check(current[0]), apply, passes,
                                       (lambda: on_round(current[0])) if on_round is not None else None)
    return FixAllResult(current[0], result, applied)
