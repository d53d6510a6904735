"""`gradtrace probe FILE`: running the probe and printing its result (DESIGN §3); the options are in
`gradtrace.commands.probe`."""

from __future__ import annotations

import json
import sys


def run(args) -> int:
    from gradtrace.probe.launcher import ProbeLauncher
    from gradtrace.probe.report import format_text
    from gradtrace.terminal import printable

    launcher = ProbeLauncher()
    try:
        result = launcher.run(args.file, python=args.python, timeout=args.timeout, memory_mb=args.memory,
                              device=args.device, mode=args.mode, max_steps=args.steps,
                              progress=(lambda m: print(f"gradtrace: {printable(m)}", file=sys.stderr))
                              if args.format == "text" else None)
    finally:
        launcher.shutdown()
    from gradtrace.gradmap.cli import write_graph

    graph_written = write_graph(result, getattr(args, "graph", None), args.file)
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        print(format_text(result))
    if not graph_written:
        return 2
    if result.get("status") in ("unsupported",) or (result.get("status") != "ok" and not result.get("findings")):
        return 2
    return 1 if result.get("findings") else 0
