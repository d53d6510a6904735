"""Jupyter notebooks: the Python cells analysed in order as one program, positions mapped back to cells.

A model defined in one cell and trained in another is one program, so the cells are concatenated with one
analysed line per cell line (positions map back exactly). IPython magics and shell escapes become `pass` (the
lines they continue onto with a trailing backslash are blanked); a cell magic (`%%bash`) blanks its cell. A syntax error in one cell is reported there and that cell is left out,
so the other cells keep their findings.

The language server (cells from the editor, keyed by cell URI) and `gradtrace check` (cells of an `.ipynb`
file, keyed by their 1-based number among all the notebook's cells, as `nb.ipynb:cell 3:2:5`) share this.
`--fix` applies edits cell by cell and writes the notebook back with its outputs and metadata untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Iterable

from gradtrace.analysis.source import SourceFile
from gradtrace.engine import check_source, file_finding, syntax_finding
from gradtrace.findings import Edit, Finding
from gradtrace.guarded_files import UnreadableFile, read_text
from gradtrace.positions import split_lines
from gradtrace.records import field, record

MAGIC = re.compile(r"^(\s*)(%|!|\?)")
HELP_SUFFIX = re.compile(r"^(\s*)[\w.]+\?{1,2}\s*$")
MAX_BROKEN_CELLS = 8
MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024  # outputs (images) make notebooks larger than source files


def neutralise(line: str) -> str:
    """An IPython-only line (magic, shell escape, `obj?`) as `pass` at the same indentation."""
    match = MAGIC.match(line) or HELP_SUFFIX.match(line)
    return match.group(1) + "pass" if match else line


def python_lines(source: str) -> list[str]:
    """A cell's lines as analysed: a cell magic blanks the whole cell, other magics become `pass`, and the lines a
    magic or shell escape continues onto with a trailing backslash (`!saved_model_cli show ...` ending in one, then
    an indented option line) are blanked with it."""
    lines = split_lines(source)
    if lines and lines[0].lstrip().startswith("%%"):
        return [""] * len(lines)
    out: list[str] = []
    continued = False
    for line in lines:
        if continued:
            out.append("")
            continued = line.endswith("\\")
            continue
        analysed = neutralise(line)
        continued = analysed != line and line.endswith("\\")
        out.append(analysed)
    return out


def locate(cells: list[tuple[int, int, Hashable]], line: int, default: Hashable) -> tuple[Hashable, int]:
    """1-based line of the concatenation -> (cell key, 0-based line offset to subtract); `default` when
    there are no cells (a plain document)."""
    for first, count, key in cells:
        if first <= line < first + count:
            return key, first - 1
    if cells:
        first, _count, key = cells[-1] if line >= cells[-1][0] else cells[0]
        return key, first - 1
    return default, 0


@record
class CellMap:
    """The analysed text's lines and, per cell, (first 1-based line, line count, key)."""

    lines: list[str] = field(default_factory=list)
    cells: list[tuple[int, int, Hashable]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def locate(self, line: int) -> tuple[Hashable, int]:
        return locate(self.cells, line, None)


def concatenate(cells: Iterable[tuple[Hashable, str]]) -> CellMap:
    """Cells as (key, source), in order -> the text to analyse and where each cell's lines are."""
    where = CellMap()
    for key, source in cells:
        lines = python_lines(source)
        where.cells.append((len(where.lines) + 1, len(lines), key))
        where.lines.extend(lines)
    return where


def check_cells(text: str, path: str, lint, project, where) -> tuple[list[Finding], list[str], bool]:
    """Findings for the concatenated cells (`where`: a CellMap or the server's LineMap), internal errors, and
    whether every cell parsed. A cell with a syntax error is reported and left out."""
    lines = list(where.lines)
    broken = []
    source = SourceFile.parse(path, text)
    for _ in range(MAX_BROKEN_CELLS):
        if source.syntax_error is None:
            break
        finding = syntax_finding(source)
        broken.append(finding)
        key, _offset = where.locate(finding.line)
        first, count = next(((f, c) for f, c, k in where.cells if k == key), (finding.line, 1))
        for n in range(first - 1, first - 1 + count):
            lines[n] = ""
        source = SourceFile.parse(path, "\n".join(lines))
    else:
        return [f for f in broken if lint.enabled("GT000", path)], [], False
    result = check_source(source.text, path, lint, project, source=source)
    findings = [f for f in broken if lint.enabled("GT000", path)] + result.findings
    return findings, result.errors, not broken


# ---- .ipynb files ---------------------------------------------------------------------------------


class NotebookError(ValueError):
    """The file is not a notebook gradtrace can read; the message says why."""


def _source_text(source) -> str:
    return "".join(source) if isinstance(source, list) else str(source or "")


def _is_python(data: dict) -> bool:
    meta = data.get("metadata") or {}
    language = (meta.get("language_info") or {}).get("name") or (meta.get("kernelspec") or {}).get("language")
    return language in (None, "", "python", "python3", "ipython", "ipython3")


@record
class Notebook:
    """An `.ipynb` file: its JSON as read, and the concatenation of its Python code cells."""

    path: str
    data: dict
    where: CellMap
    indent: int | None

    @classmethod
    def read(cls, path: str) -> Notebook:
        try:
            raw = read_text(path, MAX_NOTEBOOK_BYTES)
        except UnreadableFile as exc:
            raise NotebookError(exc.reason) from exc
        except UnicodeDecodeError as exc:
            raise NotebookError(f"not UTF-8 (byte {exc.start}: {exc.reason})") from exc
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise NotebookError(f"not a notebook: invalid JSON ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
            raise NotebookError("not a notebook: no list of cells")
        if not _is_python(data):
            raise NotebookError("not a Python notebook")
        code = [(n, _source_text(cell.get("source"))) for n, cell in enumerate(data["cells"], start=1)
                if isinstance(cell, dict) and cell.get("cell_type") == "code"]
        indent = re.match(r"\{\s*?\n( *)\"", raw)
        return cls(path, data, concatenate(code), len(indent.group(1)) if indent else None)

    @property
    def text(self) -> str:
        return self.where.text

    def check(self, settings, project) -> tuple[list[Finding], list[str]]:
        findings, errors, _ = check_cells(self.text, self.path, settings, project, self.where)
        return findings, errors

    def cell_position(self, line: int) -> tuple[int, int]:
        """1-based line of the concatenation -> (cell number, 1-based line in the cell)."""
        cell, offset = self.where.locate(line)
        return int(cell), line - offset

    def apply(self, edits: Iterable[Edit]) -> int:
        """Apply edits (in the concatenation's coordinates) to their cells; an edit across cells, or on a
        line that is not Python (a magic), is left out. Returns how many edits were applied."""
        by_cell: dict[int, list[Edit]] = {}
        for edit in edits:
            cell, offset = self.where.locate(edit.line)
            end_cell, _ = self.where.locate(edit.end_line)
            if end_cell != cell:
                continue
            by_cell.setdefault(int(cell), []).append(Edit(edit.line - offset, edit.column, edit.end_line - offset,
                                                          edit.end_column, edit.text))
        from gradtrace.fixes.apply import apply_edits

        applied = 0
        for number, cell_edits in by_cell.items():
            cell = self.data["cells"][number - 1]
            source = _source_text(cell.get("source"))
            original = split_lines(source)
            analysed = python_lines(source)
            if any(analysed[e.line - 1] != original[e.line - 1] for e in cell_edits if e.line - 1 < len(original)):
                continue
            new = apply_edits(source, cell_edits)
            if new != source:
                cell["source"] = new.splitlines(keepends=True) if isinstance(cell.get("source"), list) else new
                applied += len(cell_edits)
        code = [(n, _source_text(c.get("source"))) for n, c in enumerate(self.data["cells"], start=1)
                if isinstance(c, dict) and c.get("cell_type") == "code"]
        self.where = concatenate(code)
        return applied

    def write(self) -> None:
        """Write the notebook back: the JSON as read (outputs, metadata, key order), the cells' new sources."""
        text = json.dumps(self.data, indent=self.indent, ensure_ascii=False) + "\n"
        with open(self.path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)


def notebook_problem(path: str, error: NotebookError) -> Finding:
    return file_finding(path, "GT001", "information", f"Skipped: {error}.")
