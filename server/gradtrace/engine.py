"""Check documents: parse once, run the enabled rules, apply suppressions and settings.

This is the API the CLI and the language server share:
- `check_source(text, path, settings, project)` for one document (never raises for bad input);
- `check_paths(paths, settings)` for files and directories;
- `read_source(path)` reads a file or explains why it cannot be checked.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys

from gradtrace.findings import Finding
from gradtrace.guarded_files import UnreadableFile, read_bytes, read_text
from gradtrace.records import field, record
from gradtrace.settings import LintSettings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gradtrace.analysis.source import SourceFile

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_GITIGNORE_BYTES = 1024 * 1024
SKIP_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "env", "node_modules", "__pycache__", ".tox", ".nox",
             ".mypy_cache", ".pytest_cache", ".ruff_cache", "build", "dist", ".eggs", "site-packages"}


@record
class CheckResult:
    findings: list[Finding] = field(default_factory=list)
    # Internal problems (a rule that crashed): reported to the user's log, never raised.
    errors: list[str] = field(default_factory=list)
    # The analysis itself (what the gradient lens reads); None when the file was not analysed.
    context: object = field(default=None, repr=False, compare=False)


def file_finding(path: str, code: str, severity: str, message: str, line: int = 1, column: int = 1) -> Finding:
    return Finding(path, line, column, line, column, code, severity, message)


def syntax_finding(source: SourceFile, set_aside: list[tuple[int, int]] | None = None) -> Finding:
    """GT000 at the parser's position; `set_aside` names the lines left out so that the rest was analysed."""
    exc = source.syntax_error
    assert exc is not None
    line = max(1, exc.lineno or 1)
    column = max(1, exc.offset or 1)
    # SyntaxError.offset counts bytes on older Pythons and code points on newer ones; clamp to the line.
    column = min(column, len(source.lines.line(line)) + 1)
    end_line = getattr(exc, "end_lineno", None) or line
    end_column = getattr(exc, "end_offset", None) or column
    if (end_line, end_column) <= (line, column):
        end_line, end_column = line, column + 1
    end_column = min(end_column, len(source.lines.line(end_line)) + 1)
    if (end_line, end_column) < (line, column):
        end_line, end_column = line, column
    if set_aside:
        lines = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in set_aside)
        message = f"Syntax error: {exc.msg} (line{'s' if ',' in lines or '-' in lines else ''} {lines} not analysed)"
    else:
        message = f"Syntax error, not analysed: {exc.msg}"
    return Finding(source.path, line, column, end_line, end_column, "GT000", "error", message)


def check_source(
    text: str,
    path: str,
    settings: LintSettings | None = None,
    project=None,
    source: SourceFile | None = None,
    previous: CheckResult | None = None,
) -> CheckResult:
    """Check one document. `source` may be passed when the caller already parsed this version.

    `previous` is the result for the previous version of the same document (the editor passes it; the
    engine does not reuse it yet). A text that does not parse gets one GT000 at the parser's position,
    and the statements around the error are still analysed (`SourceFile.recovered`).
    """
    from gradtrace.analysis.source import SourceFile  # the analysis is loaded when a file is analysed (a run
    # whose every file is in the result cache never loads it)

    settings = settings or LintSettings()
    result = CheckResult()
    source = source or SourceFile.parse(path, text)
    if source.syntax_error is not None and newer_python_syntax(text, source.syntax_error):
        # valid for a newer Python than the one running gradtrace: not the user's mistake
        if settings.enabled("GT001", path):
            result.findings.append(file_finding(path, "GT001", "information",
                                                "Skipped: this file uses syntax of a newer Python than the one running "
                                                f"gradtrace ({sys.version_info.major}.{sys.version_info.minor})."))
        return result
    if source.syntax_error is not None:
        recovered = source.recovered()
        if recovered is not None:
            result = _check_parsed(recovered, path, settings, project)
        if settings.enabled("GT000", path):
            result.findings.append(syntax_finding(source, recovered.set_aside if recovered else None))
            result.findings.sort(key=Finding.sort_key)
        return result
    return _check_parsed(source, path, settings, project)


def _check_parsed(source: SourceFile, path: str, settings: LintSettings, project) -> CheckResult:
    from gradtrace.analysis.context import AnalysisContext
    from gradtrace.rules import rules_for

    result = CheckResult()
    if not source.frameworks:
        return result  # cheap pre-filter: no framework mentioned, nothing to cut
    ctx = AnalysisContext(source, project)
    result.context = ctx
    too_deep = False
    for rule_cls in rules_for(source.frameworks):
        if not settings.enabled(rule_cls.code, path):
            continue
        ctx.rule = rule_cls
        before = len(ctx.findings)
        try:
            for _ in rule_cls().check(ctx) or ():
                pass
        except RecursionError:  # a limit, not a crash: reported by one GT002 below, not as an internal error
            del ctx.findings[before:]
            too_deep = True
        except Exception:  # a crash inside one rule must not lose the others' findings
            del ctx.findings[before:]
            import traceback

            result.errors.append(f"{rule_cls.code} crashed on {path}:\n{traceback.format_exc()}")
    result.errors.extend(f"{path}: {e}" for e in ctx.internal_errors)
    seen = set()
    for f in ctx.findings:
        key = (f.code, f.line, f.column, f.end_line, f.end_column)
        if key in seen or not settings.enabled(f.code, path) or source.suppressed(f.code, f.line, f.end_line):
            continue
        seen.add(key)
        f.severity = settings.severity_for(f.code, f.severity)
        result.findings.append(f)
    if too_deep and not any(f.code == "GT002" for f in result.findings) and settings.enabled("GT002", path):
        result.findings.append(file_finding(path, "GT002", "information",
                                            "Not fully analysed: the code is nested too deeply."))
    result.findings.sort(key=Finding.sort_key)
    return result


# the head of a PEP 695 construct: `type X...`, `def f[...`, `async def f[...`, `class C[...`
NEWER_SYNTAX_HEAD = re.compile(r"^\s*(?:(type)\s+\w+\s*|(?:async\s+)?(def)\s+\w+\s*|(class)\s+\w+\s*)(?=[\[=])")


def newer_python_syntax(text: str, error: SyntaxError) -> bool:
    """True when the parser stopped on a PEP 695 generic or `type` alias (Python 3.12) this interpreter cannot read.

    Only the line the parser stopped on counts, and only a construct written out whole there (its type parameter
    list closed, then `(` for a def, `:` or `(` for a class, `=` for an alias): a damaged file that merely contains
    such a line elsewhere, or a typo that looks half like one, is a syntax error of the user's (GT000).
    """
    if sys.version_info >= (3, 12) or not error.lineno:
        return False
    lines = text.splitlines()
    if not 0 < error.lineno <= len(lines):
        return False
    line = lines[error.lineno - 1]
    head = NEWER_SYNTAX_HEAD.match(line)
    if head is None:
        return False
    rest = line[head.end():]
    if rest.startswith("["):  # the type parameters, brackets nested inside them (`[T: Callable[..., Any]]`)
        depth = 0
        for i, char in enumerate(rest):
            depth += {"[": 1, "]": -1}.get(char, 0)
            if depth == 0:
                rest = rest[i + 1:].lstrip()
                break
        else:
            return False
    follows = {"type": "=", "def": "(", "class": ":("}[next(g for g in head.groups() if g)]
    return bool(rest) and rest[0] in follows and not rest.startswith("==")


def read_source(path: str) -> tuple[str | None, Finding | None]:
    """The text of a file, or a finding that says why it is skipped (binary, non-UTF-8, unreadable, huge)."""
    try:
        data = read_bytes(path, MAX_FILE_BYTES)
    except UnreadableFile as exc:
        return None, file_finding(path, "GT001", "information", f"Skipped: {exc.reason}.")
    if b"\x00" in data[:8192]:
        return None, file_finding(path, "GT001", "information", "Skipped: binary file.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, file_finding(path, "GT001", "information",
                                  f"Skipped: not UTF-8 (byte {exc.start}: {exc.reason}).")
    return text, None


def _gitignore_patterns(directory: str) -> list[str]:
    try:
        text = read_text(os.path.join(directory, ".gitignore"), MAX_GITIGNORE_BYTES, errors="ignore")
    except UnreadableFile:  # absent, or a FIFO, a device, a huge file: no patterns
        return []
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#") and not ln.startswith("!")]


def _ignored(rel: str, name: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        p = pattern.rstrip("/")
        if p.startswith("/"):
            if fnmatch.fnmatch(rel, p[1:]):
                return True
        elif fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, "*/" + p):
            return True
    return False


PYTHON_SUFFIXES = (".py", ".pyi")


def iter_python_files(paths: list[str], settings: LintSettings | None = None, suffixes=PYTHON_SUFFIXES):
    """Yield files ending in `suffixes` under `paths` (files given explicitly are always yielded)."""
    settings = settings or LintSettings()
    for root_path in paths:
        if os.path.isfile(root_path):
            yield root_path
            continue
        patterns = _gitignore_patterns(root_path) + list(settings.exclude)
        for directory, dirnames, filenames in os.walk(root_path):
            rel_dir = os.path.relpath(directory, root_path)
            dirnames[:] = sorted(
                d for d in dirnames
                if d not in SKIP_DIRS and not d.startswith(".")
                and not _ignored(os.path.normpath(os.path.join(rel_dir, d)), d, patterns)
            )
            for name in sorted(filenames):
                if not name.endswith(suffixes):
                    continue
                rel = os.path.normpath(os.path.join(rel_dir, name))
                if not _ignored(rel, name, patterns):
                    yield os.path.join(directory, name)
