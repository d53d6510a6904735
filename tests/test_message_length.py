"""Finding messages are one short sentence (the hover carries the explanation and the fix): measured over
every rule's INVALID examples, the fixtures and the test data, as `gradtrace check` reports them."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from gradtrace.engine import check_source
from gradtrace.rules import all_rules

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKED_DIRS = ("fixtures", "tests/data", "tests/probe/data", "tests/lsp/data", "tests/gradmap/data",
                "tests/vscode/workspace")
MEDIAN, P95, LONGEST = 100, 120, 140


def example_messages() -> list[tuple[str, str]]:
    found = []
    for rule in all_rules():
        for index, example in enumerate(rule.invalid):
            for f in check_source(example.source, "example.py").findings:
                found.append((f"{rule.code} example {index}, {f.code}", f.message))
    return found


def checked_messages() -> list[tuple[str, str]]:
    dirs = [d for d in CHECKED_DIRS if os.path.isdir(os.path.join(ROOT, d))]
    proc = subprocess.run([sys.executable, "-m", "gradtrace", "check", "--format", "json", "--no-cache",
                           "--no-config", *dirs], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    return [(f"{f['path']}:{f['line']} {f['code']}", f["message"]) for f in json.loads(proc.stdout)]


def test_messages_are_short_sentences():
    messages = example_messages() + checked_messages()
    lengths = sorted(len(m) for _, m in messages)
    assert len(lengths) > 150, "too few findings to measure"
    median = statistics.median(lengths)
    p95 = statistics.quantiles(lengths, n=20, method="inclusive")[18]
    longest = sorted(messages, key=lambda item: -len(item[1]))[:10]
    report = f"{len(lengths)} messages: median {median}, p95 {p95:.0f}, max {lengths[-1]}; the longest:\n" + "\n".join(
        f"  {len(m):4d}  {where}: {m}" for where, m in longest)
    assert median <= MEDIAN and p95 <= P95 and lengths[-1] <= LONGEST, report
    print(report)
