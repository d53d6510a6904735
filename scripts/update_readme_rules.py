"""Rewrite the rules table in README.md from the rule registry: `.venv/bin/python scripts/update_readme_rules.py`."""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "server"))

from gradtrace.rules import all_rules  # noqa: E402


def table() -> str:
    rows = ["| code | name | severity | what it finds |", "|---|---|---|---|"]
    for rule in all_rules():
        rows.append(f"| `{rule.code}` | {rule.name} | {rule.severity} | {rule.summary.replace('|', '/')} |")
    return "\n".join(rows)


def main() -> None:
    path = os.path.join(ROOT, "README.md")
    text = open(path, encoding="utf-8").read()
    new = re.sub(r"<!-- rules:start -->.*?<!-- rules:end -->",
                 lambda _: f"<!-- rules:start -->\n{table()}\n<!-- rules:end -->", text, flags=re.S)
    open(path, "w", encoding="utf-8").write(new)


if __name__ == "__main__":
    main()
