"""gradtrace check | probe | server | rules  (DESIGN §3). Imports only what each command needs."""

from __future__ import annotations

import argparse
import json
import os
import sys

from gradtrace import __version__

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def _build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradtrace",
        description="Find where the autograd graph is cut: why a parameter's gradient is None or zero.",
    )
    parser.add_argument("--version", action="version", version=f"gradtrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = sub.add_parser("check", help="check files or directories statically")
    check.add_argument("paths", nargs="*", default=["."], metavar="PATH")
    check.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    check.add_argument("--select", help="comma-separated rule codes or prefixes to enable (default: all)")
    check.add_argument("--ignore", help="comma-separated rule codes or prefixes to disable")
    check.add_argument("--fix", action="store_true", help="apply safe fixes in place")
    check.add_argument("--no-config", action="store_true", help="ignore [tool.gradtrace] in pyproject.toml")
    check.add_argument("-j", "--jobs", type=int, default=1, help="parallel processes (default 1)")
    check.add_argument("--no-cache", action="store_true", help="do not read or write the result cache")

    probe = sub.add_parser("probe", help="run a sandboxed forward/backward and name dead parameters")
    args = sys.argv[1:] if argv is None else argv
    if "probe" in args:  # the probe's options are only imported when it runs
        from gradtrace.probe.cli import add_arguments

        add_arguments(probe)

    sub.add_parser("server", help="run the language server on stdio")

    rules = sub.add_parser("rules", help="list the rules, or print one rule's documentation")
    rules.add_argument("code", nargs="?")
    rules.add_argument("--format", choices=("text", "json"), default="text")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        if args.command == "check":
            from gradtrace.commands.check import run_check

            return run_check(args)
        if args.command == "probe":
            from gradtrace.probe.cli import run

            return run(args)
        if args.command == "server":
            from gradtrace.lsp.server import serve

            serve()
            return EXIT_CLEAN
        if args.command == "rules":
            return _rules(args)
        parser.print_help()
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_CLEAN
    except Exception as exc:  # never a traceback for the user: say what happened, exit 2
        print(f"gradtrace: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if os.environ.get("GRADTRACE_DEBUG"):
            raise
        return EXIT_ERROR


def _rules(args) -> int:
    from gradtrace.rules import all_rules, get_rule

    if args.code:
        rule = get_rule(args.code)
        if rule is None:
            print(f"gradtrace: no rule {args.code!r}; `gradtrace rules` lists them", file=sys.stderr)
            return EXIT_ERROR
        if args.format == "json":
            print(json.dumps({"code": rule.code, "name": rule.name, "summary": rule.summary,
                              "severity": rule.severity, "framework": rule.framework, "docs": rule.documentation()}))
        else:
            print(rule.documentation())
        return EXIT_CLEAN
    rows = [{"code": r.code, "name": r.name, "severity": r.severity, "framework": r.framework, "summary": r.summary}
            for r in all_rules()]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['code']}  {r['name']:<34} {r['severity']:<11} {r['summary']}")
    return EXIT_CLEAN


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
