"""`gradtrace rules [CODE]`: list the rules or print one's documentation; `--markdown DIR` / `--html DIR`
build the documentation pages (see `gradtrace.rule_docs`)."""

from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    parser.add_argument("code", nargs="?", help="a rule code, e.g. GT105")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    build = parser.add_mutually_exclusive_group()
    build.add_argument("--markdown", metavar="DIR", help="write one Markdown page per rule and an index into DIR")
    build.add_argument("--html", metavar="DIR", help="write one HTML page per rule and an index into DIR")


def run(args) -> int:
    from gradtrace.rules import all_rules, get_rule

    if args.markdown or args.html:
        from gradtrace.rule_docs import write_pages

        directory = args.markdown or args.html
        written = write_pages(directory, "markdown" if args.markdown else "html")
        print(f"gradtrace: {len(written)} pages written to {directory}", file=sys.stderr)
        return 0
    if args.code:
        rule = get_rule(args.code)
        if rule is None:
            print(f"gradtrace: no rule {args.code!r}; `gradtrace rules` lists them", file=sys.stderr)
            return 2
        if args.format == "json":
            print(json.dumps({"code": rule.code, "name": rule.name, "summary": rule.summary, "severity": rule.severity,
                              "framework": rule.framework, "docs": rule.documentation(), "url": rule().url}))
        else:
            print(rule.documentation())
        return 0
    rows = [{"code": r.code, "name": r.name, "severity": r.severity, "framework": r.framework, "summary": r.summary}
            for r in all_rules()]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['code']}  {r['name']:<34} {r['severity']:<11} {r['summary']}")
    return 0
