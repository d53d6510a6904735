"""How `gradtrace check` prints its findings: text, JSON, SARIF 2.1.0, GitHub workflow annotations, statistics.

Findings carry positions in the analysed text; for a notebook that is the concatenation of its code cells, so
here each position becomes (cell number, line in the cell): `nb.ipynb:cell 2:3:9` in text, `"cell": 2` beside
cell-relative lines in JSON (for the related places and the fix edits too), and in SARIF and GitHub output.
"""

from __future__ import annotations

import os
from collections import Counter

from gradtrace import __version__
from gradtrace.findings import Finding
from gradtrace.records import record
from gradtrace.terminal import printable

SARIF_LEVEL = {"error": "error", "warning": "warning", "information": "note", "hint": "note"}
GITHUB_LEVEL = {"error": "error", "warning": "warning", "information": "notice", "hint": "notice"}


@record(frozen=True)
class Place:
    """Where a position is for the reader: the cell (None outside notebooks) and the line in it."""

    cell: int | None
    line: int
    end_line: int


class Cells:
    """Maps positions in notebooks to their cells; read once per notebook that has findings."""

    def __init__(self, findings: list[Finding]):
        self._notebooks = {}
        paths = {f.path for f in findings if f.path.endswith(".ipynb")}
        if not paths:
            return
        from gradtrace.notebooks import Notebook, NotebookError

        for path in paths:
            try:
                self._notebooks[path] = Notebook.read(path)
            except NotebookError:
                pass  # its GT001 finding has no cell

    def place(self, path: str, line: int, end_line: int) -> Place:
        notebook = self._notebooks.get(path)
        if notebook is None or not notebook.where.cells:
            return Place(None, line, end_line)
        cell, in_cell = notebook.cell_position(line)
        return Place(cell, in_cell, end_line - (line - in_cell))

    def label(self, path: str, line: int) -> tuple[str, int]:
        """`path` or `path:cell N`, and the line to print after it."""
        place = self.place(path, line, line)
        return (path if place.cell is None else f"{path}:cell {place.cell}"), place.line


def _json(finding: Finding, cells: Cells) -> dict:
    obj = finding.to_json()
    place = cells.place(finding.path, finding.line, finding.end_line)
    if place.cell is None:
        return obj
    obj = {"path": obj["path"], "cell": place.cell, **obj, "line": place.line, "end_line": place.end_line}
    for related in obj.get("related") or []:
        where = cells.place(related["path"], related["line"], related["end_line"])
        related.update(cell=where.cell, line=where.line, end_line=where.end_line)
    for edit in (obj.get("fix") or {}).get("edits") or []:
        where = cells.place(finding.path, edit["line"], edit["end_line"])
        edit.update(cell=where.cell, line=where.line, end_line=where.end_line)
    return obj


def _uri(path: str) -> str:
    return os.path.relpath(path).replace(os.sep, "/")


def _region(place: Place, column: int, end_column: int) -> dict:
    return {"startLine": place.line, "startColumn": column, "endLine": place.end_line, "endColumn": end_column}


def _physical(path: str, place: Place, column: int, end_column: int) -> dict:
    location = {"physicalLocation": {"artifactLocation": {"uri": _uri(path)},
                                     "region": _region(place, column, end_column)}}
    if place.cell is not None:
        location["properties"] = {"cell": place.cell}
    return location


def to_sarif(findings: list[Finding], cells: Cells | None = None) -> dict:
    from gradtrace.rules import all_rules

    cells = cells or Cells(findings)
    rules = [
        {
            "id": r.code,
            "name": r.name,
            "shortDescription": {"text": r.summary},
            "fullDescription": {"text": r.section("What it does") or r.summary},
            "help": {"text": r.documentation(), "markdown": r.documentation()},
            "defaultConfiguration": {"level": SARIF_LEVEL[r.severity]},
        }
        for r in all_rules()
    ]
    results = []
    for f in findings:
        place = cells.place(f.path, f.line, f.end_line)
        result = {
            "ruleId": f.code,
            "level": SARIF_LEVEL.get(f.severity, "warning"),
            "message": {"text": f.message},
            "locations": [_physical(f.path, place, f.column, f.end_column)],
        }
        if f.related:
            result["relatedLocations"] = [
                {"id": i, "message": {"text": r.message},
                 **_physical(r.path, cells.place(r.path, r.line, r.end_line), r.column, r.end_column)}
                for i, r in enumerate(f.related)
            ]
        if f.fix:
            result["fixes"] = [{"description": {"text": f.fix.title}, "artifactChanges": [{
                "artifactLocation": {"uri": _uri(f.path)},
                "replacements": [{"deletedRegion": _region(cells.place(f.path, e.line, e.end_line), e.column,
                                                           e.end_column),
                                  "insertedContent": {"text": e.text}} for e in f.fix.edits],
            }]}]
        results.append(result)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "gradtrace", "version": __version__, "rules": rules}},
                  "results": results}],
    }


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(findings: list[Finding], cells: Cells) -> str:
    """One workflow command per finding (`::warning file=...,line=...::message`): annotations on pull requests."""
    lines = []
    for f in findings:
        label, line = cells.label(f.path, f.line)
        place = cells.place(f.path, f.line, f.end_line)
        props = (f"file={_escape_property(_uri(f.path))},line={place.line},col={f.column},endLine={place.end_line},"
                 f"endColumn={f.end_column},title={_escape_property(f'gradtrace ({f.code})')}")
        message = f"{label}:{line}:{f.column}: {f.code} {f.message}"
        lines.append(f"::{GITHUB_LEVEL.get(f.severity, 'warning')} {props}::{_escape_data(message)}\n")
    return "".join(lines)


def statistics(findings: list[Finding]) -> list[dict]:
    """Findings per rule, most frequent first: {code, name, count, fixable}."""
    from gradtrace.rules import get_rule

    counts = Counter(f.code for f in findings)
    fixable = {f.code for f in findings if f.fix and f.fix.safe}
    rows = []
    for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        rule = get_rule(code)
        rows.append({"code": code, "name": rule.name if rule else "", "count": count, "fixable": code in fixable})
    return rows


def summary(findings: list[Finding], files: int, fix: bool, fixed: int) -> str:
    n = len(findings)
    text = f"Found {n} finding{'s' if n != 1 else ''} in {files} file{'s' if files != 1 else ''}."
    if fix:
        text += f" Applied {fixed} fix{'es' if fixed != 1 else ''}."
    elif any(f.fix and f.fix.safe for f in findings):
        text += " [*] fixable with `gradtrace check --fix`."
    return text


def render(findings: list[Finding], fmt: str, *, files: int, fix: bool, fixed: int, stats: bool) -> str:
    """Everything `check` prints on stdout, in one string (written at once)."""
    if fmt in ("json", "sarif"):
        import json  # only for these formats (its import costs every text run start-up)
    if stats:
        rows = statistics(findings)
        if fmt == "json":
            return json.dumps(rows, indent=1) + "\n"
        width = max((len(str(r["count"])) for r in rows), default=1)
        return "".join(f"{r['count']:>{width}}  {r['code']}  {'[*]' if r['fixable'] else '   '} {r['name']}\n"
                       for r in rows)
    cells = Cells(findings)
    if fmt == "json":
        return json.dumps([_json(f, cells) for f in findings], indent=1) + "\n"
    if fmt == "sarif":
        return json.dumps(to_sarif(findings, cells), indent=1) + "\n"
    if fmt == "github":
        return github_annotations(findings, cells)
    out = []
    for f in findings:
        label, line = cells.label(f.path, f.line)
        fixable = " [*]" if f.fix and f.fix.safe else ""
        # a file name or a message quoting the checked code must not drive the terminal
        out.append(printable(f"{label}:{line}:{f.column}: {f.code} [{f.severity}] {f.message}{fixable}") + "\n")
    out.append(("" if not findings else "\n") + summary(findings, files, fix, fixed) + "\n")
    return "".join(out)
