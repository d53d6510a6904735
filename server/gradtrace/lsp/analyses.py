"""One analysis of one document version: a snapshot taken on the event loop goes in, an `Analysis` comes out.

`compute` runs in the analysis thread pool and never raises. It applies the limits of live analysis
(a document over `MAX_LIVE_CHARS` or with binary content gets one GT001), hands the text to an analysis
process (`worker.run_check`), hides GT000 when the editor shows its own syntax errors, and converts the
findings to diagnostics in the client's position units.
"""

from __future__ import annotations

import time
import traceback
from typing import TYPE_CHECKING

from lsprotocol import types

from gradtrace.analysis.lens import LensIndex
from gradtrace.engine import file_finding
from gradtrace.findings import Finding
from gradtrace.lsp.diagnostics import LineMap, to_diagnostic
from gradtrace.lsp.worker import WorkerDied, run_check
from gradtrace.records import record
from gradtrace.settings import LintSettings

if TYPE_CHECKING:
    from gradtrace.lsp.server import GradtraceServer

# Beyond this, live analysis would take seconds and hundreds of MB per keystroke (ast.parse of
# 10 MB of Python: ~18 s, ~1.8 GB here); the document gets one GT001 finding instead.
MAX_LIVE_CHARS = 1_000_000


@record(frozen=True)
class Snapshot:
    """Everything one analysis needs, captured on the event loop."""

    key: str
    version: object
    path: str
    text: str
    where: LineMap
    lint: LintSettings
    generation: int
    encoding: str
    related_support: bool
    enabled: bool
    show_syntax_errors: bool = True
    root: str | None = None


@record
class Analysis:
    key: str
    version: object
    generation: int
    where: LineMap
    findings: list[Finding]
    errors: list[str]
    # uri -> [(diagnostic, finding)], in client units
    diagnostics: dict[str, list[tuple[types.Diagnostic, Finding]]]
    seconds: float = 0.0
    reused: bool = False  # the previous findings, mapped through an edit of comments or whitespace
    lens: LensIndex | None = None  # what each value carries and each loss reaches (None: not analysed)

    @property
    def has_safe_fix(self) -> bool:
        return any(f.fix and f.fix.safe for f in self.findings)


def live_limits(snap: Snapshot) -> tuple[list[Finding], list[str]] | None:
    """GT001 (and a log line) for a document that is not analysed while editing; None when it is."""
    if len(snap.text) > MAX_LIVE_CHARS:
        size = len(snap.text.encode("utf-8", "surrogatepass")) / 1e6
        return ([file_finding(snap.path, "GT001", "information",
                              f"Not analysed while editing: the document is {size:.1f} MB, over the "
                              f"{MAX_LIVE_CHARS / 1e6:.0f} MB limit for live analysis.")],
                [f"{snap.path}: {size:.1f} MB, skipped (live analysis limit)"])
    if "\x00" in snap.text[:8192]:
        return [file_finding(snap.path, "GT001", "information", "Not analysed: binary content.")], []
    return None


def compute(ls: GradtraceServer, snap: Snapshot, previous: Analysis | None) -> Analysis:
    """Analyse one snapshot (in the analysis thread pool); never raises."""
    start = time.perf_counter()
    errors: list[str] = []
    reused = False
    lens = None
    try:
        limited = live_limits(snap) if snap.enabled else ([], [])
        if limited is not None:
            findings, errors = limited
        else:
            job = {"text": snap.text, "path": snap.path, "lint": snap.lint, "root": snap.root,
                   "where": snap.where if snap.where.cells else None}
            findings, errors, reused, lens = ls.worker.call(run_check, job)
            errors = list(errors)
    except WorkerDied as exc:
        errors.append(f"analysis of {snap.path} (version {snap.version}) crashed the analysis process: {exc}")
        findings = [file_finding(snap.path, "GT001", "information",
                                 "Not analysed: the analysis crashed on this version (details in the log).")]
    except Exception as exc:  # the engine promises not to raise; if it does, keep serving
        errors.append(f"analysis of {snap.path} failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        findings = list(previous.findings) if previous else []
        lens = previous.lens if previous else None
    shown = findings if snap.show_syntax_errors else [f for f in findings if f.code != "GT000"]
    diagnostics: dict[str, list] = {uri: [] for uri in snap.where.uris}
    for finding in shown:
        try:
            uri, diagnostic = to_diagnostic(
                finding, snap.where, snap.encoding, version=snap.version if not snap.where.cells else None,
                related_support=snap.related_support, related_lines=lambda path: file_lines(ls, path),
            )
        except Exception as exc:
            errors.append(f"cannot convert {finding.code} at {snap.path}:{finding.line}: {exc}")
            continue
        diagnostics.setdefault(uri, []).append((diagnostic, finding))
    return Analysis(snap.key, snap.version, snap.generation, snap.where, shown, errors, diagnostics,
                    time.perf_counter() - start, reused, lens)


def file_lines(ls: GradtraceServer, path: str) -> list[str] | None:
    """The lines of a project file (its unsaved text when it is open)."""
    project = ls.project_for(path)
    source = project.source(path) if project else None
    return source.lines.lines if source else None
