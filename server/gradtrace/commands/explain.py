"""`gradtrace explain FILE:LINE[:COL]`: what the value there carries gradient from and what cut it, and what the
losses of the file reach — the same facts as the editor's hover and code lens."""

from __future__ import annotations

import json
import os
import sys


def add_arguments(parser) -> None:
    parser.add_argument("where", metavar="FILE:LINE[:COL]", help="a position (1-based line and column)")
    parser.add_argument("--format", choices=("text", "json"), default="text")


def parse_where(where: str) -> tuple[str, int, int | None]:
    parts = where.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return parts[0], int(parts[1]), int(parts[2])
    parts = where.rsplit(":", 1)
    if len(parts) == 2 and parts[1].isdigit():
        return parts[0], int(parts[1]), None
    raise ValueError(f"expected FILE:LINE or FILE:LINE:COL, got {where!r}")


def run(args) -> int:
    from gradtrace.analysis.lens import Lens
    from gradtrace.analysis.project import Project, find_project_root
    from gradtrace.engine import check_source, read_source
    from gradtrace.terminal import printable

    try:
        path, line, column = parse_where(args.where)
    except ValueError as exc:
        print(f"gradtrace: {exc}", file=sys.stderr)
        return 2
    if not os.path.isfile(path):
        print(f"gradtrace: no such file: {path}", file=sys.stderr)
        return 2
    text, problem = read_source(path)
    if text is None:
        print(f"gradtrace: {problem.message}", file=sys.stderr)
        return 2
    result = check_source(text, path, project=Project(find_project_root(path)))
    if result.context is None:
        print("gradtrace: the file was not analysed (a syntax error, or no PyTorch code)", file=sys.stderr)
        return 2
    lens = Lens(result.context)
    lines = text.splitlines()
    if column is None:  # the first expression on the line
        current = lines[line - 1] if 0 < line <= len(lines) else ""
        column = len(current) - len(current.lstrip()) + 1
    facts = lens.value_at(line, column)
    sinks = [s for s in lens.sinks() if s.line == line] or lens.sinks()
    if args.format == "json":
        print(json.dumps({"value": facts.to_json() if facts else None, "losses": [s.to_json() for s in sinks]},
                         indent=2))
        return 0
    if facts is None:
        print(f"{path}:{line}:{column}: no tensor value here that the analysis followed")
    else:
        print(printable(f"{path}:{facts.line}:{facts.column}: `{facts.expr}` ({facts.kind})"))
        if facts.carries:
            for group, members in sorted(facts.groups.items()):
                inner = "" if members == [group] else " (" + ", ".join(m for m in members if m != group) + ")"
                print(printable(f"  carries gradient from {group}{inner}"))
        else:
            print(printable(f"  carries no gradient: {facts.why_none}"))
        for cut in facts.cuts:
            where = "" if cut.path == path else f" of {os.path.basename(cut.path)}"
            what = "zeroes" if cut.zero else "cut"
            print(printable(f"  lost: {', '.join(cut.lost)} — {what} by `{cut.op}` on line {cut.line}{where}"))
    for sink in sinks:
        print(printable(f"{path}:{sink.line}:{sink.column}: `{sink.label}` {sink.title}"))
    return 0
