"""What each rule costs inside `gradtrace check`, in process, on real files.

    .venv/bin/python bench/rule_times.py FILE [FILE ...] [--repeat 5] [--rules GT133,GT136] [--json]

For every file, each run parses it afresh, builds the facts the rules share (node index, import names,
the PyTorch value flow, the semantic model), then runs every rule of the file's frameworks on those facts.
Printed per file, as the minimum over the runs: `ast.parse` of the text (the floor), each shared fact, each
rule's own time, and the rules' sum. Times are this process's CPU time (steadier than wall-clock time on a
busy machine). Nothing is cached between runs.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "server"))

from gradtrace.analysis.context import AnalysisContext  # noqa: E402
from gradtrace.analysis.source import SourceFile  # noqa: E402
from gradtrace.rules import rules_for  # noqa: E402

SHARED = {
    "node index": lambda ctx: ctx.source.index,
    "import names": lambda ctx: ctx.names,
    "PyTorch value flow": lambda ctx: ctx.torch if "torch" in ctx.source.frameworks else None,
    "semantic model": lambda ctx: ctx.source.semantic,
}


def timed(action) -> float:
    start = time.process_time()
    action()
    return time.process_time() - start


def one_run(path: str, text: str, codes: set[str] | None) -> dict[str, float]:
    times = {"ast.parse": timed(lambda: ast.parse(text))}
    source = SourceFile.parse(path, text)
    ctx = AnalysisContext(source)
    for name, build in SHARED.items():
        times[name] = timed(lambda: build(ctx))  # noqa: B023
    for rule in rules_for(source.frameworks):
        if codes and rule.code not in codes:
            continue
        ctx.rule = rule
        times[rule.code] = timed(lambda: list(rule().check(ctx) or ()))  # noqa: B023
    return times


def measure(path: str, repeat: int, codes: set[str] | None) -> dict[str, float]:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    best: dict[str, float] = {}
    for _ in range(repeat):
        for name, seconds in one_run(path, text, codes).items():
            best[name] = min(seconds, best.get(name, seconds))
    best["rules (sum)"] = sum(v for k, v in best.items() if k.startswith("GT"))
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rules", help="only these codes (comma-separated)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    codes = set(args.rules.upper().split(",")) if args.rules else None
    report = {"command": "python bench/rule_times.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "files": {}}
    for path in args.files:
        report["files"][path] = {k: round(v * 1000, 2) for k, v in measure(path, args.repeat, codes).items()}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(report["command"])
    for path, times in report["files"].items():
        print(f"\n{path}  (ms, minimum of {args.repeat} runs)")
        for name, ms in times.items():
            print(f"  {name:<20} {ms:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
