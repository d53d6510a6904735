"""Every rule's own VALID and INVALID examples, run through the real engine (Fixit-style harness)."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source
from gradtrace.fixes.apply import apply_edits
from gradtrace.rules import all_rules
from gradtrace.rules.base import DOC_SECTIONS, valid_examples

STATIC_RULES = [r for r in all_rules() if r.framework != "probe"]


def _ids(items):
    return [f"{r.code}-{i}" for r, i in items]


VALID = [(r, i) for r in STATIC_RULES for i in range(len(r.valid))]
INVALID = [(r, i) for r in STATIC_RULES for i in range(len(r.invalid))]


def findings_of(rule, text, path="example.py"):
    return [f for f in check_source(text, path).findings if f.code == rule.code]


@pytest.mark.parametrize(("rule", "index"), VALID, ids=_ids(VALID))
def test_valid_example_is_quiet(rule, index):
    text = valid_examples(rule)[index]
    found = findings_of(rule, text)
    assert found == [], f"{rule.code} flagged a valid example: {[(f.line, f.message) for f in found]}"


@pytest.mark.parametrize(("rule", "index"), INVALID, ids=_ids(INVALID))
def test_invalid_example_is_flagged_where_marked(rule, index):
    example = rule.invalid[index]
    text = example.source
    expected = example.expected_lines(rule.code)
    assert expected, f"{rule.code} INVALID example {index} marks no line with '# expect: {rule.code}'"
    found = findings_of(rule, text)
    assert sorted({f.line for f in found}) == expected, [(f.line, f.message) for f in found]
    for f in found:
        assert f.severity == rule.severity or f.severity in ("warning", "information", "error")
        assert f.message and f.message.endswith((".", ")", "`", "?")), f.message


@pytest.mark.parametrize(("rule", "index"), INVALID, ids=_ids(INVALID))
def test_safe_fix_result(rule, index):
    example = rule.invalid[index]
    text = example.source
    found = findings_of(rule, text)
    edits = [e for f in found if f.fix and f.fix.safe for e in f.fix.edits]
    if example.fixed is not None:
        assert edits, f"{rule.code} offers no safe fix for example {index}"
        fixed = apply_edits(text, edits)
        assert fixed == textwrap.dedent(example.fixed).lstrip("\n")
    if edits:
        fixed = apply_edits(text, edits)
        compile(fixed, "fixed.py", "exec")
        again = findings_of(rule, fixed)
        assert again == [], f"{rule.code}: the fix left {[(f.line, f.message) for f in again]}"


@pytest.mark.parametrize("rule", all_rules(), ids=[r.code for r in all_rules()])
def test_rule_documentation_has_every_section(rule):
    for section in DOC_SECTIONS:
        assert rule.section(section), f"{rule.code} docs lack '## {section}'"
    assert rule.summary.endswith("."), rule.summary
    assert rule.name == rule.name.lower() and " " not in rule.name


def test_codes_are_unique_and_well_formed():
    codes = [r.code for r in all_rules()]
    assert len(codes) == len(set(codes))
    for code in codes:
        assert code.startswith("GT") and len(code) == 5 and code[2:].isdigit()
