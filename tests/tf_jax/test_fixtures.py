"""The TensorFlow and JAX demo fixtures: each `# expect: GTxxx` line is flagged, nothing else warns."""

from __future__ import annotations

import os
import re

import pytest
from gradtrace.engine import check_source

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPECT = re.compile(r"#\s*expect:\s*((?:GT\d{3}[,\s]*)+)")
FILES = sorted(
    os.path.join(d, name)
    for d in (os.path.join(ROOT, "fixtures", "tensorflow"), os.path.join(ROOT, "fixtures", "jax"))
    for name in os.listdir(d)
    if name.endswith(".py")
)


def expected(text: str) -> set[tuple[int, str]]:
    out = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = EXPECT.search(line)
        if m:
            out |= {(lineno, code) for code in re.findall(r"GT\d{3}", m.group(1))}
    return out


def test_fixtures_cover_both_frameworks_with_bugs_and_clean_files():
    texts = {os.path.basename(os.path.dirname(p)): [] for p in FILES}
    for p in FILES:
        with open(p, encoding="utf-8") as fh:
            texts[os.path.basename(os.path.dirname(p))].append(bool(expected(fh.read())))
    assert set(texts) == {"tensorflow", "jax"}
    for flags in texts.values():
        assert True in flags and False in flags  # at least one buggy and one clean file each


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(p, ROOT) for p in FILES])
def test_fixture_findings_match_expect_comments(path):
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    result = check_source(text, path)
    assert not result.errors, result.errors
    got = {(f.line, f.code) for f in result.findings if f.severity in ("warning", "error")}
    assert got == expected(text)
    for f in result.findings:
        assert f.message.endswith(".") and "`" in f.message  # one sentence that names what is cut
