"""The analysis worker: a child process that runs the engine, so the server's event loop never waits
for the GIL behind `ast.parse` or a rule (hovers stay instant while a big file is analysed).

The server sends each job with the editor's unsaved texts that changed since the previous job (one
worker, jobs in order), so cross-file analysis in the child sees what the editor sees. The child is
started with `spawn` (never `fork` a threaded server). If it dies, the server starts a new one and
reports the document it was analysing; when no process can be started, analysis runs in a thread.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from gradtrace.analysis.project import Project
from gradtrace.analysis.source import SourceFile
from gradtrace.engine import check_source

# ---- in the child ---------------------------------------------------------------------------------

_projects: dict[str, Project] = {}


def _project(root: str | None) -> Project | None:
    if root is None:
        return None
    project = _projects.get(root)
    if project is None:
        project = _projects[root] = Project(root)
    return project


def _apply(overlays: list[tuple[str | None, str, str | None]]) -> None:
    for root, path, text in overlays:
        project = _project(root)
        if project is not None:
            project.set_overlay(path, text)


def run_check(job: dict):
    """(findings, errors, parsed cleanly) for one document or notebook."""
    _apply(job["overlays"])
    project = _project(job["root"])
    if job["where"] is not None and job["where"].cells:
        from gradtrace.lsp.notebook import check_notebook

        return check_notebook(job["text"], job["path"], job["lint"], project, job["where"])
    source = SourceFile.parse(job["path"], job["text"])
    result = check_source(job["text"], job["path"], job["lint"], project, source=source)
    return result.findings, result.errors, source.syntax_error is None


def run_fix_all(job: dict) -> str:
    """The text after applying every safe fix, re-checking until nothing changes."""
    from gradtrace.fixes.apply import apply_edits

    _apply(job["overlays"])
    project = _project(job["root"])
    text = job["text"]
    for _ in range(job.get("passes", 5)):
        result = check_source(text, job["path"], job["lint"], project)
        edits = [e for f in result.findings if f.fix and f.fix.safe for e in f.fix.edits]
        if not edits:
            break
        new = apply_edits(text, edits)
        if new == text:
            break
        text = new
    return text


def warm_up() -> int:
    from gradtrace.rules import all_rules

    all_rules()
    return os.getpid()


# ---- in the server --------------------------------------------------------------------------------


class WorkerDied(RuntimeError):
    """The analysis process died while running a job (the job is not retried)."""


class AnalysisWorker:
    """One child process; `call(fn, job)` blocks the calling (pool) thread, never the event loop."""

    def __init__(self, use_process: bool = True):
        self.use_process = use_process
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._overlays: dict[str, tuple[str | None, str | None, int]] = {}  # path -> (root, text, stamp)
        self._sent: dict[str, int] = {}
        self._stamp = 0
        self.restarts = 0

    def set_overlay(self, root: str | None, path: str, text: str | None) -> None:
        with self._lock:
            self._stamp += 1
            self._overlays[path] = (root, text, self._stamp)

    def _delta(self) -> list[tuple[str | None, str, str | None]]:
        delta = []
        for path, (root, text, stamp) in self._overlays.items():
            if self._sent.get(path) != stamp:
                delta.append((root, path, text))
                self._sent[path] = stamp
        for path in [p for p, (_r, text, _s) in self._overlays.items() if text is None]:
            del self._overlays[path]
            self._sent.pop(path, None)
        return delta

    def _ensure_pool(self) -> ProcessPoolExecutor | None:
        if not self.use_process:
            return None
        if self._pool is None:
            try:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
                self._sent.clear()
            except (OSError, ValueError, ImportError):
                self.use_process = False
                return None
        return self._pool

    def start(self) -> Future | None:
        """Start the child now (imports take a moment) rather than on the first keystroke."""
        with self._lock:
            pool = self._ensure_pool()
            return pool.submit(warm_up) if pool is not None else None

    def call(self, fn, job: dict):
        with self._lock:
            pool = self._ensure_pool()
            if pool is None:
                job["overlays"] = self._delta()
                local = True
            else:
                job["overlays"] = self._delta()
                future = pool.submit(fn, job)
                local = False
        if local:
            return fn(job)
        try:
            return future.result()
        except BrokenProcessPool as exc:
            with self._lock:
                if self._pool is not None:
                    self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
                self._sent.clear()
                self.restarts += 1
            raise WorkerDied(f"the analysis process died ({exc}); a new one is started") from exc

    def shutdown(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
