"""`gradtrace check`: static findings for files and directories, as text, JSON or SARIF."""

from __future__ import annotations

import gc
import json
import os
import re
import sys
from dataclasses import replace

from gradtrace import __version__
from gradtrace.engine import check_source, iter_python_files, read_source
from gradtrace.findings import Finding
from gradtrace.fixes.fix_all import fix_all
from gradtrace.settings import LintSettings, SettingsError, load_pyproject_settings, parse_codes


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


def check_file(path: str, settings: LintSettings, project, fix: bool) -> tuple[list[Finding], list[str], int]:
    """Findings for one file (after applying safe fixes when `fix`), internal errors, fixes applied."""
    text, problem = read_source(path)
    if text is None:
        return ([problem] if problem and settings.enabled(problem.code, path) else []), [], 0
    if not fix:
        result = check_source(text, path, settings, project)
        return result.findings, result.errors, 0

    def write(new_text: str) -> None:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(new_text)
        if project is not None:
            project.set_overlay(path, None)

    fixed = fix_all(text, lambda t: check_source(t, path, settings, project), on_round=write)
    return fixed.result.findings, fixed.result.errors, fixed.applied


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


def _check_one(job):
    """Worker entry for -j: (path, settings, fix, root) -> (findings as JSON, errors, applied)."""
    path, settings, fix, root = job
    from gradtrace.analysis.project import Project

    project = _WORKER_PROJECTS.get(root)
    if project is None:
        project = _WORKER_PROJECTS[root] = Project(root)
    findings, errors, applied = check_file(path, settings, project, fix)
    return [f.to_json() for f in findings], errors, applied


def run_check(args) -> int:
    from gradtrace.analysis.project import Project, find_project_root

    # The analysis allocates many small, short-lived objects and no cycles worth chasing mid-file: collect
    # rarely (10-20% of a check's time otherwise goes to the cyclic collector).
    gc.freeze()
    gc.set_threshold(100_000, 50, 50)

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
    files = list(iter_python_files(args.paths, settings))
    root = find_project_root(args.paths[0])
    findings: list[Finding] = []
    errors: list[str] = []
    fixed = 0
    from gradtrace.commands.cache import ResultCache

    cache = None if (args.no_cache or args.fix) else ResultCache.for_root(root, settings)
    todo = []
    for path in files:
        cached = cache.get(path) if cache else None
        if cached is not None:
            findings.extend(cached)
        else:
            todo.append(path)
    todo = in_dependency_order(todo, root)
    if args.jobs and args.jobs > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
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
            got, errs, applied = check_file(path, settings, project, args.fix)
            findings.extend(got)
            errors.extend(errs)
            fixed += applied
            if cache and not errs:
                cache.put(path, got)
    if cache:
        cache.save()
    for err in errors:
        print(printable(f"gradtrace: internal error (reported, other findings kept): {err}", keep="\n"),
              file=sys.stderr)
    findings.sort(key=Finding.sort_key)
    out = sys.stdout
    if args.format == "json":
        out.write(json.dumps([f.to_json() for f in findings], indent=1))  # one write: json.dump writes per token
        out.write("\n")
    elif args.format == "sarif":
        out.write(json.dumps(to_sarif(findings), indent=1))
        out.write("\n")
    else:
        for f in findings:
            fixable = " [*]" if f.fix and f.fix.safe else ""
            out.write(printable(f"{f.path}:{f.line}:{f.column}: {f.code} [{f.severity}] {f.message}{fixable}") + "\n")
        n = len(findings)
        summary = f"Found {n} finding{'s' if n != 1 else ''} in {len(files)} file{'s' if len(files) != 1 else ''}."
        if args.fix:
            summary += f" Applied {fixed} fix{'es' if fixed != 1 else ''}."
        elif any(f.fix and f.fix.safe for f in findings):
            summary += " [*] fixable with `gradtrace check --fix`."
        out.write(("" if not findings else "\n") + summary + "\n")
    return 1 if findings else 0


# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a terminal shows
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, keep: str = "") -> str:
    """`text` with control characters shown as escapes (`\\x1b`): a file name or an exception message
    from the checked code must not drive the terminal."""
    return CONTROL.sub(lambda m: m.group(0) if m.group(0) in keep else m.group(0).encode("unicode_escape").decode(),
                       text)


SARIF_LEVEL = {"error": "error", "warning": "warning", "information": "note", "hint": "note"}


def to_sarif(findings: list[Finding]) -> dict:
    from gradtrace.rules import all_rules

    rules = [
        {
            "id": r.code,
            "name": r.name,
            "shortDescription": {"text": r.summary},
            "fullDescription": {"text": r.section("What it does") or r.summary},
            "helpUri": r().url,
            "help": {"text": r.documentation(), "markdown": r.documentation()},
            "defaultConfiguration": {"level": SARIF_LEVEL[r.severity]},
        }
        for r in all_rules()
    ]
    results = []
    for f in findings:
        result = {
            "ruleId": f.code,
            "level": SARIF_LEVEL.get(f.severity, "warning"),
            "message": {"text": f.message},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": os.path.relpath(f.path).replace(os.sep, "/")},
                "region": {"startLine": f.line, "startColumn": f.column, "endLine": f.end_line,
                           "endColumn": f.end_column},
            }}],
        }
        if f.related:
            result["relatedLocations"] = [
                {"id": i, "message": {"text": r.message}, "physicalLocation": {
                    "artifactLocation": {"uri": os.path.relpath(r.path).replace(os.sep, "/")},
                    "region": {"startLine": r.line, "startColumn": r.column, "endLine": r.end_line,
                               "endColumn": r.end_column}}}
                for i, r in enumerate(f.related)
            ]
        if f.fix:
            result["fixes"] = [{"description": {"text": f.fix.title}, "artifactChanges": [{
                "artifactLocation": {"uri": os.path.relpath(f.path).replace(os.sep, "/")},
                "replacements": [{"deletedRegion": {"startLine": e.line, "startColumn": e.column,
                                                    "endLine": e.end_line, "endColumn": e.end_column},
                                  "insertedContent": {"text": e.text}} for e in f.fix.edits],
            }]}]
        results.append(result)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "gradtrace", "version": __version__, "rules": rules}},
                  "results": results}],
    }
