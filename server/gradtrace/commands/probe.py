"""`gradtrace probe FILE`: the options; the probe itself is `gradtrace.probe.cli.run` (DESIGN §3)."""

from __future__ import annotations

import argparse


def _checked(convert, check, name):
    """An argparse type: parse with `convert`, then `check` (messages.seconds, ...); its message on failure."""
    def parse(text: str):
        try:
            return check(convert(text))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace(name, "it", 1)) from None

    parse.__name__ = name
    return parse


def add_arguments(parser) -> None:
    from gradtrace.probe.runtime import messages

    parser.add_argument("file", help="the Python file to probe")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--timeout", type=_checked(float, messages.seconds, "timeout"), default=60.0, metavar="SECONDS",
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
    parser.add_argument("--graph", metavar="OUT", default=None,
                        help="also write the gradient map: OUT.svg, OUT.html (self-contained page) or OUT.dot")


def run(args) -> int:
    from gradtrace.probe.cli import run as run_probe

    return run_probe(args)
