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


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, told the terminal's width: left to find it, argparse imports `shutil` (and the
    compression modules `shutil` imports) on every run, help or not."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        if width is None:
            width = _terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _terminal_columns() -> int:
    """What `shutil.get_terminal_size().columns` answers: $COLUMNS, else the terminal's, else 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


def _build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradtrace",
        formatter_class=_Formatter,
        description="Find where the autograd graph is cut: why a parameter's gradient is None or zero.",
    )
    parser.add_argument("--version", action="version", version=f"gradtrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen(sys.argv[1:] if argv is None else argv)
    for name, help_text in COMMANDS.items():
        if chosen is not None and name != chosen:
            continue  # the list of commands is shown only when none is chosen: each parser costs start-up
        command = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                                 formatter_class=_Formatter)
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
