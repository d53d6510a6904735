"""The analysis worker: a child process that runs the engine, so the server's event loop never waits
for the GIL behind `ast.parse` or a rule (hovers stay instant while a big file is analysed).

Each job carries the document's text once: the child also makes it the document's unsaved text for
cross-file analysis, and the server sends only the other documents' texts that changed since the
child's previous job. The child keeps its last analysis of each document: an edit that changed only
comments or whitespace gets the previous findings mapped through it (`relocation.layout_move`),
anything else is analysed with the previous result handed to the engine (`check_source(previous=...)`).
The child also sends the document's gradient lens (`Lens.index()`: what each value carries, what each loss
reaches), which hover, code lens and inlay hints read; through a layout-only edit it is mapped like the
findings. Jobs for one document go to the same child while it is free. Children are started with `spawn` (never
`fork` a threaded server); if one dies, the server starts a new one and reports the document it was
analysing; when no process can be started, analysis runs in a thread.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from gradtrace import parsing
from gradtrace.analysis.lens import Lens, LensIndex
from gradtrace.analysis.project import Project
from gradtrace.analysis.project_index import ProjectIndex
from gradtrace.analysis.source import SourceFile
from gradtrace.engine import CheckResult, check_source
from gradtrace.lsp.relocation import LayoutMove, Outline, Unmappable, findings_through, layout_move, outline
from gradtrace.positions import split_lines
from gradtrace.records import record
from gradtrace.settings import LintSettings

MAX_CONSECUTIVE_DEATHS = 3

# ---- in the child ---------------------------------------------------------------------------------

_projects: dict[str, Project] = {}


@record
class LastAnalysis:
    """What the child keeps of a document's last analysis (no tree: an outline of its statements)."""

    lines: list[str]
    outline: Outline | None  # None when the text did not parse
    result: CheckResult
    lens: LensIndex | None
    lint: LintSettings
    root: str | None
    received: int  # `_received` when it ran


_last: dict[str, LastAnalysis] = {}
_received = 0  # texts of documents received so far
_changed_at: dict[str, int] = {}  # path -> `_received` when its text last came
_indexes: dict[str, ProjectIndex] = {}


def _project(root: str | None) -> Project | None:
    if root is None:
        return None
    project = _projects.get(root)
    if project is None:
        project = _projects[root] = Project(root)
    return project


def _apply(overlays: list[tuple[str | None, str, str | None]]) -> None:
    global _received
    for root, path, text in overlays:
        project = _project(root)
        if project is not None:
            project.set_overlay(path, text)
        _received += 1
        _changed_at[path] = _received
        if text is None:
            _last.pop(path, None)


def _may_read_changed_texts(last: LastAnalysis, path: str, text: str) -> bool:
    """Whether another document this one imports (directly or not) changed since `last` was computed."""
    changed = {p for p, at in _changed_at.items() if at > last.received and p != path}
    if not changed:
        return False
    if last.root is None:
        return True
    index = _indexes.get(last.root)
    if index is None:
        index = _indexes[last.root] = ProjectIndex(last.root)
    index.update(path, text)
    index.follow(path)
    return bool(changed & index.imported_paths(path, transitive=True))


def run_check(job: dict):
    """(findings, errors, whether the previous findings were mapped through a layout-only edit, the lens)."""
    with _collector.analysing():
        return _run_check(job)


def _run_check(job: dict):
    path, text, root = job["path"], job["text"], job["root"]
    own = os.path.abspath(path) if os.path.isabs(path) else None
    _apply(job["overlays"])
    project = _project(root)
    if job.get("overlay_from_text") and project is not None and own:
        project.set_overlay(own, text)
    if job["where"] is not None and job["where"].cells:
        from gradtrace.notebooks import check_cells

        findings, errors, _ = check_cells(text, path, job["lint"], project, job["where"])
        return findings, errors, False, None
    lines = split_lines(text)
    key = own or path
    last = _last.get(key)
    if last is not None and last.outline is not None and (last.lint, last.root) == (job["lint"], root) \
            and not _may_read_changed_texts(last, key, text):
        moving = layout_move(last.outline, last.lines, lines)
        moved = findings_through(moving, last.result.findings)
        lens = _lens_through(moving, last.lens) if moved is not None else None
        if moved is not None and (lens is not None or last.lens is None):
            shape = last.outline if len(lines) == len(last.lines) else _outline_of(text)
            _last[key] = LastAnalysis(lines, shape, CheckResult(moved, []), lens, job["lint"], root, _received)
            return moved, [], True, lens
    source = SourceFile.parse(path, text)
    result = check_source(text, path, job["lint"], project, source=source, previous=last.result if last else None)
    shape = outline(source.tree) if source.tree is not None else None
    errors = list(result.errors)
    lens = _lens_of(result, errors)
    # the findings, not the analysis they came from (its trees and summaries would stay alive per open document)
    _last[key] = LastAnalysis(lines, shape, CheckResult(result.findings, result.errors), lens, job["lint"], root,
                              _received)
    return result.findings, errors, False, lens


def _lens_of(result: CheckResult, errors: list[str]) -> LensIndex | None:
    if result.context is None:
        return None
    try:
        return Lens(result.context).index()
    except Exception as exc:  # the findings stand without it
        errors.append(f"the gradient lens failed: {type(exc).__name__}: {exc}")
        return None


def _lens_through(moving: LayoutMove, lens: LensIndex | None) -> LensIndex | None:
    """The previous lens at its new positions, or None when the edit moved a line it names (analyse again)."""
    if lens is None or any(moving.line_after(line) != line for line in lens.named_lines()):
        return None
    try:
        return lens.relocated(moving.move)
    except Unmappable:
        return None


def _outline_of(text: str) -> Outline | None:
    try:
        return outline(parsing.parse(text))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def run_fix_all(job: dict) -> str:
    """The text after applying every safe fix, re-checking until nothing changes."""
    from gradtrace.fixes.fix_all import fix_all

    with _collector.analysing():
        _apply(job["overlays"])
        project = _project(job["root"])
        return fix_all(job["text"], lambda text: check_source(text, job["path"], job["lint"], project)).text


def child_init(server_pid: int) -> None:
    """Runs first in the child: keep stdout (the LSP stream) clean, and die with the server (also when it
    died while this child was still starting: then the child's parent is no longer `server_pid`)."""
    import sys

    try:
        os.dup2(2, 1)
    except OSError:
        pass
    sys.stdout = sys.stderr
    try:  # Linux: the kernel signals us when the server goes, however it goes
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError, ValueError):
        pass
    if os.getppid() != server_pid:
        os._exit(0)

    def watch() -> None:  # everywhere: poll for the parent
        while os.getppid() == server_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="gradtrace-parent-watch", daemon=True).start()


def warm_up() -> int:
    import gradtrace.analysis.context  # noqa: F401  (the analysis, loaded before the first document comes)
    from gradtrace.rules import all_rules

    all_rules()
    # What is imported now lives as long as the process: keep it out of collections. The cyclic collector
    # runs when the process is idle (`IdleCollector`), never inside an analysis.
    gc.collect()
    gc.freeze()
    gc.disable()
    _collector.start()
    return os.getpid()


class IdleCollector:
    """The cyclic collector of an analysis process, run while the user is not typing.

    An analysis leaves its tree and values behind in reference cycles (about 50k objects for a 2k-line
    document, 10-40 ms to collect), and a collection that starts inside one (the interpreter's default)
    traverses every object alive then: on a 5k-line document, a 1 s pause in one keystroke of ten. Here the young
    objects are collected once no analysis has run for a moment, everything once the user has paused for
    longer, and at the start of an analysis only when very much piled up (typing without a pause)."""

    YOUNG_AFTER = 0.02  # seconds without an analysis (a keystroke's garbage: ~50k objects, 10-40 ms to collect)
    FULL_AFTER = 2.0
    PILED_UP = 500_000  # objects allocated since the last collection

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.finished = time.monotonic()
        self.young_pending = self.full_pending = False
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="gradtrace-idle-gc", daemon=True)
            self.thread.start()

    @contextlib.contextmanager
    def analysing(self):
        with self.lock:
            if self.thread is not None and gc.get_count()[0] > self.PILED_UP:
                gc.collect(1)
            try:
                yield
            finally:
                self.finished = time.monotonic()
                self.young_pending = self.full_pending = self.thread is not None

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()

    def _run(self) -> None:
        while not self.stopping.wait(0.01):
            idle = time.monotonic() - self.finished
            if self.young_pending and idle >= self.YOUNG_AFTER or self.full_pending and idle >= self.FULL_AFTER:
                with self.lock:
                    if self.full_pending and time.monotonic() - self.finished >= self.FULL_AFTER:
                        gc.collect()
                        self.young_pending = self.full_pending = False
                    elif self.young_pending:
                        gc.collect(1)
                        self.young_pending = False


_collector = IdleCollector()


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
                                                 initializer=child_init, initargs=(os.getpid(),))
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
            own = self._overlays.get(os.path.abspath(job["path"])) if os.path.isabs(job.get("path", "")) else None
            if own is not None and own[1] is not None and own[1] == job.get("text"):
                # the job's text is the document's unsaved text: sent once, with the job
                self._sent[os.path.abspath(job["path"])] = own[2]
                job["overlay_from_text"] = True
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
    """A few `AnalysisWorker`s. A document's jobs go to the child that analysed it last (it keeps that
    analysis) unless that child is busy and another is free, so one big file does not hold up the rest."""

    def __init__(self, count: int = 2, use_process: bool = True):
        self.workers = [AnalysisWorker(use_process) for _ in range(max(1, count))]
        self._busy = [0] * len(self.workers)
        self._home: dict[str, int] = {}  # document path -> the child that analysed it last
        self._lock = threading.Lock()

    @property
    def restarts(self) -> int:
        return sum(w.restarts for w in self.workers)

    def set_overlay(self, root: str | None, path: str, text: str | None) -> None:
        for worker in self.workers:
            worker.set_overlay(root, path, text)
        if text is None:
            with self._lock:
                self._home.pop(path, None)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def call(self, fn, job: dict):
        with self._lock:
            index = self._home.get(job.get("path", ""))
            if index is None or self._busy[index] > min(self._busy):
                index = min(range(len(self.workers)), key=self._busy.__getitem__)
            self._busy[index] += 1
            if "path" in job:
                self._home[job["path"]] = index
        try:
            return self.workers[index].call(fn, job)
        finally:
            with self._lock:
                self._busy[index] -= 1

    def shutdown(self) -> None:
        for worker in self.workers:
            worker.shutdown()

