"""The hover of every rule: the fix first, examples that parse and say what they mean, short.

The diff shown for a rule is its Example -> Use instead change. Each side, read without its +/- marks,
must parse as Python (a `return` may stand as a fragment); the lines a diff keeps or adds come from
"Use instead", the lines it removes from "Example"; and the hover never repeats the finding's message.
"""

from __future__ import annotations

import ast
import statistics
import textwrap
from pathlib import Path

import pytest
from gradtrace.analysis.project import Project
from gradtrace.engine import check_source
from gradtrace.lsp.hover import _code, example_diff, finding_markdown
from gradtrace.rules import all_rules

ROOT = Path(__file__).resolve().parents[2]
RULES = [rule for rule in all_rules() if example_diff(rule) and rule.code != "GT000"]  # GT000's Example is
# a syntax error on purpose


def sides(diff: str) -> tuple[list[str], list[str]]:
    body = diff.removeprefix("```diff\n").removesuffix("\n```").split("\n")
    old = [line[1:] for line in body if line[0] in " -"]
    new = [line[1:] for line in body if line[0] in " +"]
    return old, new


def parses(lines: list[str]) -> bool:
    try:
        ast.parse(textwrap.dedent("\n".join(lines)))
    except SyntaxError:
        return False
    return True


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.code)
def test_the_example_diff_parses_on_both_sides_and_comes_from_the_docs(rule):
    old, new = sides(example_diff(rule))
    assert parses(old) and parses(new), example_diff(rule)
    example = [line.strip() for line in _code(rule, "Example")]
    instead = [line.strip() for line in _code(rule, "Use instead")]
    assert all(line.strip() in example for line in old), (rule.code, old)
    assert all(line.strip() in instead for line in new), (rule.code, new)
    assert old != new


def test_the_loop_example_keeps_the_loop_under_no_grad():
    """GT120 once read as "replace the loop with `with torch.no_grad():`"."""
    from gradtrace.rules import get_rule

    assert example_diff(get_rule("GT120")) == (
        "```diff\n-for p in params:\n-    p.add_(torch.randn_like(p) * 0.01)\n+with torch.no_grad():\n"
        "+    for p in params:\n+        p.add_(torch.randn_like(p) * 0.01)\n```")


def fixture_findings():
    project = Project(str(ROOT / "fixtures"))
    for path in sorted((ROOT / "fixtures").rglob("*.py")):
        yield from check_source(path.read_text(encoding="utf-8"), str(path), project=project).findings


def test_hovers_lead_with_the_fix_and_do_not_repeat_the_message():
    lengths = []
    for finding in fixture_findings():
        text = finding_markdown(finding)
        lengths.append(len(text))
        assert text.startswith("**Fix:**"), text
        assert finding.message not in text
        assert text.rstrip().endswith(")") or text.rstrip().endswith(finding.code)  # the rule's link closes it
    assert len(lengths) >= 20
    assert statistics.median(lengths) <= 400, sorted(lengths)
