"""gradtrace check | probe | server | rules  (DESIGN §3).

Each subcommand is a module of `gradtrace.commands` with `add_arguments(parser)` and `run(args)`; only the module
of the command being run is imported (the language server's start-up imports nothing of the checker's).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from gradtrace import __version__
from gradtrace.commands import COMMANDS

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def _chosen(args: list[str]) -> str | None:
    """The subcommand named on the command line (the first argument that is not an option)."""
    for arg in args:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def _build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradtrace",
        description="Find where the autograd graph is cut: why a parameter's gradient is None or zero.",
    )
    parser.add_argument("--version", action="version", version=f"gradtrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen(sys.argv[1:] if argv is None else argv)
    for name, help_text in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        if name == chosen:
            module = importlib.import_module(f"gradtrace.commands.{name}")
            module.add_arguments(command)
            command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_CLEAN
    except Exception as exc:  # never a traceback for the user: say what happened, exit 2
        print(f"gradtrace: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if os.environ.get("GRADTRACE_DEBUG"):
            raise
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
