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

MAX_CONSECUTIVE_DEATHS = 3

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
    from gradtrace.fixes.fix_all import fix_all

    _apply(job["overlays"])
    project = _project(job["root"])
    return fix_all(job["text"], lambda text: check_source(text, job["path"], job["lint"], project)).text


def child_init() -> None:
    """Runs first in the child: keep stdout (the LSP stream) clean, and die with the server."""
    import sys

    try:
        os.dup2(2, 1)
    except OSError:
        pass
    sys.stdout = sys.stderr
    parent = os.getppid()
    try:  # Linux: the kernel signals us when the server goes, however it goes
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError, ValueError):
        pass

    def watch() -> None:  # everywhere: poll for the parent
        import time

        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="gradtrace-parent-watch", daemon=True).start()


def warm_up() -> int:
    import gc

    from gradtrace.rules import all_rules

    all_rules()
    # What is imported now lives as long as the process: keep it out of collections, and collect rarely
    # (an analysis allocates many short-lived objects and few cycles).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
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
        self._failures = 0  # deaths since the last job that finished

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
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=child_init)
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
        with self._lock:  # the overlay delta and the submission must keep the same order
            pool = self._ensure_pool()
            job["overlays"] = self._delta()
            if pool is not None:
                future = pool.submit(fn, job)
        if pool is None:
            return fn(job)
        try:
            result = future.result()
        except BrokenProcessPool as exc:
            with self._lock:
                if self._pool is not None:
                    self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
                self._sent.clear()
                self.restarts += 1
                self._failures += 1
                if self._failures >= MAX_CONSECUTIVE_DEATHS:  # cannot keep a process alive here
                    self.use_process = False
                    raise WorkerDied(f"the analysis process died {self._failures} times in a row ({exc}); "
                                     "analysing in the server process from now on") from exc
            raise WorkerDied(f"the analysis process died ({exc}); a new one is started") from exc
        self._failures = 0
        return result

    def shutdown(self) -> None:
        """Stop the child now: the server is exiting, a half-done analysis is worth nothing."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                try:
                    process.terminate()
                except (OSError, AttributeError):
                    pass
            pool.shutdown(wait=False, cancel_futures=True)


class AnalysisWorkers:
    """A few `AnalysisWorker`s: a job goes to the least busy, so one big file does not hold up the rest."""

    def __init__(self, count: int = 2, use_process: bool = True):
        self.workers = [AnalysisWorker(use_process) for _ in range(max(1, count))]
        self._busy = [0] * len(self.workers)
        self._lock = threading.Lock()

    @property
    def restarts(self) -> int:
        return sum(w.restarts for w in self.workers)

    def set_overlay(self, root: str | None, path: str, text: str | None) -> None:
        for worker in self.workers:
            worker.set_overlay(root, path, text)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def call(self, fn, job: dict):
        with self._lock:
            index = min(range(len(self.workers)), key=self._busy.__getitem__)
            self._busy[index] += 1
        try:
            return self.workers[index].call(fn, job)
        finally:
            with self._lock:
                self._busy[index] -= 1

    def shutdown(self) -> None:
        for worker in self.workers:
            worker.shutdown()

