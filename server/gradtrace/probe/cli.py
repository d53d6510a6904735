"""`gradtrace probe FILE`: argument wiring and output (DESIGN §3)."""

from __future__ import annotations

import argparse
import json
import sys

from gradtrace.probe.runtime import messages


def _checked(convert, check, name):
    """An argparse type: parse with `convert`, then `check` (messages.seconds, ...); its message on failure."""
    def parse(text: str):
        try:
            return check(convert(text))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace(name, "it", 1)) from None

    parse.__name__ = name
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the Python file to probe")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--timeout", type=_checked(float, messages.seconds, "timeout"), default=60.0,
                        metavar="SECONDS",
                        help="wall-clock limit for the probed code (default 60)")
    parser.add_argument("--python", metavar="INTERPRETER", default=None,
                        help="the interpreter that runs the code (default: this one)")
    parser.add_argument("--memory", type=_checked(int, messages.memory_mb, "memory_mb"), default=4096, metavar="MB",
                        help="memory limit (default 4096)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or the device the code may use, e.g. cuda")
    parser.add_argument("--mode", choices=("auto", "script", "module"), default="auto",
                        help="script: run as __main__ up to backward(); module: build the nn.Modules (default auto)")
    parser.add_argument("--steps", type=_checked(int, messages.max_steps, "max_steps"), default=16, metavar="N",
                        help="observe at most N backward() calls of a script (default 16)")
    from gradtrace.gradmap.cli import add_argument as add_graph_argument

    add_graph_argument(parser)


def run(args) -> int:
    from gradtrace.probe.launcher import ProbeLauncher
    from gradtrace.probe.report import format_text, printable

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
