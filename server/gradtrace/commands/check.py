"""`gradtrace check`: static findings for files, directories and notebooks (printed by `commands/output.py`)."""

from __future__ import annotations

import gc
import os
import sys

from gradtrace.engine import CheckResult, check_source, iter_python_files, read_source
from gradtrace.findings import Finding
from gradtrace.records import replace
from gradtrace.settings import LintSettings, SettingsError, load_pyproject_settings, parse_codes
from gradtrace.terminal import printable

CHECKED_SUFFIXES = (".py", ".pyi", ".ipynb")


def default_jobs() -> int:
    """`-j` when not given: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def build_settings(args) -> tuple[LintSettings, list[str]]:
    warnings: list[str] = []
    settings = LintSettings()
    if not args.no_config:
        settings, warning = load_pyproject_settings(args.paths[0] if args.paths else ".")
        if warning:
            warnings.append(warning)
    if args.select:
        settings = replace(settings, select=parse_codes(args.select, "--select"))
    if args.ignore:
        settings = replace(settings, ignore=settings.ignore + parse_codes(args.ignore, "--ignore"))
    return settings, warnings


class TextFile:
    """A Python file being checked (and fixed): its text, checked with `check_source`, written back whole."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text

    def check(self, settings: LintSettings, project) -> tuple[list[Finding], list[str]]:
        # the project's parse of this file, when it has one of the same text: parsed once whether it is
        # checked, imported by another checked file, or both
        shared = project.source(self.path) if project is not None else None
        source = None
        if shared is not None and shared.text == self.text:
            source = shared.named(self.path)  # the same tree and node index, named as the user named the file
        result = check_source(self.text, self.path, settings, project, source=source)
        return result.findings, result.errors

    def apply(self, edits: list) -> int:
        from gradtrace.fixes.apply import apply_edits  # with --fix only

        new_text = apply_edits(self.text, edits)
        if new_text == self.text:
            return 0
        self.text = new_text
        return len(edits)

    def write(self) -> None:
        with open(self.path, "w", encoding="utf-8", newline="") as fh:
            fh.write(self.text)


def open_document(path: str):
    """(a TextFile or a Notebook, None), or (None, the GT001 finding that says why the file is skipped)."""
    if path.endswith(".ipynb"):
        from gradtrace.notebooks import Notebook, NotebookError, notebook_problem

        try:
            return Notebook.read(path), None
        except NotebookError as exc:
            return None, notebook_problem(path, exc)
    text, problem = read_source(path)
    return (TextFile(path, text), None) if text is not None else (None, problem)


def check_file(path: str, settings: LintSettings, project, fix: bool) -> tuple[list[Finding], list[str], int]:
    """Findings for one file or notebook (after applying safe fixes when `fix`), internal errors, fixes applied."""
    document, problem = open_document(path)
    if document is None:
        return ([problem] if problem and settings.enabled(problem.code, path) else []), [], 0
    if not fix:
        findings, errors = document.check(settings, project)
        return findings, errors, 0

    def check() -> CheckResult:
        findings, errors = document.check(settings, project)
        return CheckResult(findings, errors)

    def write() -> None:
        document.write()
        if project is not None:
            project.set_overlay(path, None)

    from gradtrace.fixes.fix_all import fix_until_stable

    result, applied = fix_until_stable(check, lambda edits: bool(document.apply(edits)), on_round=write)
    return result.findings, result.errors, applied


def in_dependency_order(paths: list[str], root: str) -> list[str]:
    """Each module before the files that import it, and files that import each other side by side (so a
    worker that checks them parses their shared modules once), read from the project index."""
    if len(paths) < 2:
        return paths
    from gradtrace.analysis.project_index import ProjectIndex

    index = ProjectIndex(root)
    for path in paths:
        index.index_file(path)
    return index.dependency_order(paths)


_WORKER_PROJECTS: dict = {}  # root -> Project, kept for the life of a worker process

# Garbage the cyclic collector may look at before it runs between two files (reference counting frees the rest).
CYCLE_GARBAGE_BOUND = 2_000_000


def pause_cycle_collector() -> None:
    """The analysis allocates many small objects that live as long as a file's (or the project's) analysis and
    makes few reference cycles: a collection in the middle of a file traverses all of them for nothing (a
    third of a model file's time, parsing its imports). Collect between files instead, when enough piled up."""
    gc.freeze()
    gc.disable()


def collect_between_files() -> None:
    if gc.get_count()[0] > CYCLE_GARBAGE_BOUND:
        gc.collect(1)  # the young generations only: survivors move to the oldest, never traversed again here


def _check_one(job):
    """Worker entry for -j: (path, settings, fix, root) -> (findings as JSON, errors, applied)."""
    path, settings, fix, root = job
    from gradtrace.analysis.project import Project

    project = _WORKER_PROJECTS.get(root)
    if project is None:
        project = _WORKER_PROJECTS[root] = Project(root)
        pause_cycle_collector()
    collect_between_files()
    findings, errors, applied = check_file(path, settings, project, fix)
    return [f.to_json() for f in findings], errors, applied


def add_arguments(parser) -> None:
    parser.add_argument("paths", nargs="*", default=["."], metavar="PATH")
    parser.add_argument("--format", choices=("text", "json", "sarif", "github"), default="text",
                        help="text (default), json, sarif, or github (workflow annotations on pull requests)")
    parser.add_argument("--select", help="comma-separated rule codes or prefixes to enable (default: all)")
    parser.add_argument("--ignore", help="comma-separated rule codes or prefixes to disable")
    parser.add_argument("--fix", action="store_true", help="apply safe fixes in place (notebooks too)")
    parser.add_argument("--statistics", action="store_true", help="print the number of findings per rule instead")
    parser.add_argument("--no-config", action="store_true", help="ignore [tool.gradtrace] in pyproject.toml")
    parser.add_argument("-j", "--jobs", type=int, default=None,
                        help="parallel processes (default: the number of cores)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the result cache")


def run_check(args) -> int:
    from gradtrace.analysis.project import Project, find_project_root

    pause_cycle_collector()

    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        print(f"gradtrace: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        settings, warnings = build_settings(args)
    except SettingsError as exc:
        print(f"gradtrace: {exc}", file=sys.stderr)
        return 2
    if warnings:  # a broken [tool.gradtrace] is a usage error, as with other linters
        for warning in warnings:
            print(f"gradtrace: {warning}", file=sys.stderr)
        return 2
    files = list(iter_python_files(args.paths, settings, suffixes=CHECKED_SUFFIXES))
    root = find_project_root(args.paths[0])
    findings: list[Finding] = []
    errors: list[str] = []
    fixed = 0
    cache = None
    if not (args.no_cache or args.fix):
        from gradtrace.commands.cache import ResultCache  # (with json and a hash: only when a cache is used)

        cache = ResultCache.for_root(root, settings)
    todo = []
    for path in files:
        cached = cache.get(path) if cache else None
        if cached is not None:
            findings.extend(cached)
        else:
            todo.append(path)
    todo = in_dependency_order(todo, root)
    jobs = min(args.jobs or default_jobs(), len(todo))
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            jobs = [(p, settings, args.fix, root) for p in todo]
            for path, (items, errs, applied) in zip(todo, pool.map(_check_one, jobs, chunksize=8)):
                got = [Finding.from_json(i) for i in items]
                findings.extend(got)
                errors.extend(errs)
                fixed += applied
                if cache and not errs:
                    cache.put(path, got)
    else:
        project = Project(root)
        for path in todo:
            collect_between_files()
            got, errs, applied = check_file(path, settings, project, args.fix)
            findings.extend(got)
            errors.extend(errs)
            fixed += applied
            if cache and not errs:
                cache.put(path, got)
    if cache:
        cache.save()
    for err in errors:
        message = f"gradtrace: internal error (reported, other findings kept): {err}"
        print("\n".join(printable(line) for line in message.splitlines()), file=sys.stderr)
    findings.sort(key=Finding.sort_key)
    from gradtrace.commands.output import render

    sys.stdout.write(render(findings, args.format, files=len(files), fix=args.fix, fixed=fixed, stats=args.statistics))
    return 1 if findings else 0


run = run_check  # the command's entry point (gradtrace.commands convention)
