"""Text-document sync and the analysis scheduler.

One *target* per text document or notebook. Changes wake the target's runner, which waits out a
short debounce, snapshots the text on the event loop, analyses it in the thread pool (never on the
event loop, so hovers stay responsive), and publishes only if the document has not moved on
meanwhile — stale results are dropped and the newest version analysed instead. Pull requests share
the same per-version analysis (one future per version and settings generation).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.uris import to_fs_path

from gradtrace.engine import file_finding
from gradtrace.findings import Finding, Fix
from gradtrace.lsp.diagnostics import LineMap, to_diagnostic
from gradtrace.lsp.worker import WorkerDied, run_check
from gradtrace.positions import split_lines
from gradtrace.settings import LintSettings

if TYPE_CHECKING:
    from gradtrace.lsp.server import GradtraceServer

# Beyond this, live analysis would take seconds and hundreds of MB per keystroke (ast.parse of
# 10 MB of Python: ~18 s, ~1.8 GB here); the document gets one GT001 finding instead.
MAX_LIVE_CHARS = 1_000_000
DEPENDENT_DELAY = 0.3  # seconds: re-check files that import a changed one
RELOCATE_WINDOW = 400  # lines searched when re-anchoring an earlier finding


@dataclass(frozen=True)
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
    previous: Analysis | None = None


@dataclass
class Analysis:
    key: str
    version: object
    generation: int
    where: LineMap
    findings: list[Finding]
    errors: list[str]
    # uri -> [(diagnostic, finding)], in client units
    diagnostics: dict[str, list[tuple[types.Diagnostic, Finding]]]
    clean_parse: bool = True
    seconds: float = 0.0

    @property
    def has_safe_fix(self) -> bool:
        return any(f.fix and f.fix.safe for f in self.findings)


@dataclass
class Target:
    key: str
    notebook: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    runner: asyncio.Task | None = None
    pinned: tuple[object, str] | None = None  # (version, text) analysed in onSave mode
    last_change: float = float("-inf")  # event-loop time of the last change
    published: set[str] = field(default_factory=set)


class Documents:
    """The server's view of open documents and their latest analyses."""

    def __init__(self, ls: GradtraceServer):
        self.ls = ls
        self.targets: dict[str, Target] = {}
        self.analyses: dict[str, Analysis] = {}
        self._inflight: dict[tuple, asyncio.Future] = {}
        self._refresh_handle: asyncio.TimerHandle | None = None

    # ---- snapshots ---------------------------------------------------------------------------

    def target_key(self, uri: str) -> str:
        """A cell URI -> its notebook's URI; any other URI -> itself."""
        try:
            nb = self.ls.workspace.get_notebook_document(cell_uri=uri)
        except Exception:
            nb = None
        return nb.uri if nb is not None else uri

    @staticmethod
    def path_for(uri: str) -> str:
        try:
            path = to_fs_path(uri)
        except Exception:
            path = None
        return path or uri

    def current_version(self, key: str):
        target = self.targets.get(key)
        if target is None:
            return None
        if target.notebook:
            from gradtrace.lsp.notebook import notebook_version

            return notebook_version(self.ls, key)
        try:
            return self.ls.workspace.get_text_document(key).version
        except Exception:
            return None

    def wanted_version(self, key: str):
        target = self.targets.get(key)
        if target is not None and target.pinned is not None and self._on_save(key):
            return target.pinned[0]
        return self.current_version(key)

    def _on_save(self, key: str) -> bool:
        return self.ls.config.for_path(self.path_for(key)).lint_run == "onSave"

    def snapshot(self, key: str) -> Snapshot | None:
        target = self.targets.get(key)
        if target is None:
            return None
        path = self.path_for(key)
        if target.notebook:
            from gradtrace.lsp.notebook import build_notebook

            built = build_notebook(self.ls, key)
            if built is None:
                return None
            version, text, where = built
        else:
            try:
                doc = self.ls.workspace.get_text_document(key)
            except Exception:
                return None
            version, text = doc.version, doc.source
            if target.pinned is not None and self._on_save(key):
                version, text = target.pinned
            where = LineMap(key, path, split_lines(text))
        server_settings = self.ls.config.for_path(path)
        lint, warning = self.ls.config.lint_for(path if os.path.isabs(path) else None)
        if warning:
            self.ls.warn_once(warning)
        return Snapshot(
            key=key, version=version, path=path, text=text, where=where, lint=lint,
            generation=self.ls.config.generation, encoding=self.ls.encoding,
            related_support=self.ls.supports_related_information, enabled=server_settings.lint_enable,
            previous=self.analyses.get(key),
        )

    # ---- analysis ----------------------------------------------------------------------------

    async def analyse(self, snap: Snapshot) -> Analysis:
        cached = self.analyses.get(snap.key)
        if cached and cached.version == snap.version and cached.generation == snap.generation:
            return cached
        ident = (snap.key, snap.version, snap.generation)
        future = self._inflight.get(ident)
        if future is None:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self.ls.analysis_pool, self._compute, snap)
            self._inflight[ident] = future
            future.add_done_callback(lambda _f: self._inflight.pop(ident, None))
        analysis = await asyncio.shield(future)
        if snap.key in self.targets:
            previous = self.analyses.get(snap.key)
            # keep the newest: ours, unless another analysis was stored while this one ran
            if previous is None or previous is snap.previous or analysis.version == self.wanted_version(snap.key):
                self.analyses[snap.key] = analysis
        if not getattr(future, "logged", False):
            future.logged = True  # type: ignore[attr-defined]
            for err in analysis.errors:
                self.ls.log(types.MessageType.Error, err)
            self.ls.log(types.MessageType.Log, f"{os.path.basename(snap.path)} v{snap.version}: "
                        f"{len(analysis.findings)} findings in {analysis.seconds * 1000:.0f} ms")
        return analysis

    def _compute(self, snap: Snapshot) -> Analysis:
        """Runs in the analysis thread pool; never raises."""
        start = time.perf_counter()
        errors: list[str] = []
        clean = True
        try:
            if not snap.enabled:
                findings: list[Finding] = []
            elif len(snap.text) > MAX_LIVE_CHARS:
                size = len(snap.text.encode("utf-8", "surrogatepass")) / 1e6
                findings = [file_finding(snap.path, "GT001", "information",
                                         f"Not analysed while editing: the document is {size:.1f} MB, over the "
                                         f"{MAX_LIVE_CHARS / 1e6:.0f} MB limit for live analysis.")]
                errors.append(f"{snap.path}: {size:.1f} MB, skipped (live analysis limit)")
            elif "\x00" in snap.text[:8192]:
                findings = [file_finding(snap.path, "GT001", "information", "Not analysed: binary content.")]
            else:
                job = {"text": snap.text, "path": snap.path, "lint": snap.lint,
                       "root": self.ls.project_root(snap.path), "where": snap.where if snap.where.cells else None}
                findings, errors, clean = self.ls.worker.call(run_check, job)
                errors = list(errors)
                if not clean and not snap.where.cells:
                    findings = findings + carry_over(snap.previous, snap.where.lines, findings)
        except WorkerDied as exc:
            errors.append(f"analysis of {snap.path} (version {snap.version}) crashed the analysis process: {exc}")
            findings = [file_finding(snap.path, "GT001", "information",
                                     "Not analysed: the analysis crashed on this version (details in the log).")]
        except Exception as exc:  # the engine promises not to raise; if it does, keep serving
            import traceback

            errors.append(f"analysis of {snap.path} failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            findings = list(snap.previous.findings) if snap.previous else []
        diagnostics: dict[str, list] = {uri: [] for uri in snap.where.uris}
        for finding in findings:
            try:
                uri, diagnostic = to_diagnostic(
                    finding, snap.where, snap.encoding, version=snap.version if not snap.where.cells else None,
                    related_support=snap.related_support, related_lines=self._lines_of,
                )
            except Exception as exc:
                errors.append(f"cannot convert {finding.code} at {snap.path}:{finding.line}: {exc}")
                continue
            diagnostics.setdefault(uri, []).append((diagnostic, finding))
        return Analysis(snap.key, snap.version, snap.generation, snap.where, findings, errors, diagnostics,
                        clean, time.perf_counter() - start)

    def _lines_of(self, path: str) -> list[str] | None:
        project = self.ls.project_for(path)
        source = project.source(path) if project else None
        return source.lines.lines if source else None

    async def ensure(self, key: str) -> Analysis | None:
        """The analysis of the version the editor wants now (analysing it if needed)."""
        analysis = self.analyses.get(key)
        for _ in range(5):
            snap = self.snapshot(key)
            if snap is None:
                return analysis
            analysis = await self.analyse(snap)
            if self.wanted_version(key) == snap.version:
                break
        return analysis

    # ---- scheduling --------------------------------------------------------------------------

    def open_target(self, key: str, notebook: bool = False) -> Target:
        target = self.targets.get(key)
        if target is None:
            target = self.targets[key] = Target(key, notebook=notebook)
        return target

    def schedule(self, key: str, delay: float | None = None) -> None:
        """Analyse `key` after the debounce; with pull clients only when needed for refresh."""
        target = self.targets.get(key)
        if target is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if delay is None:
            delay = self.ls.config.for_path(self.path_for(key)).lint_debounce_ms / 1000
            if now - target.last_change > delay and (target.runner is None or target.runner.done()):
                delay = 0.0  # the first change after a pause: answer at once; a burst is then coalesced
            target.last_change = now
        target.wake.set()
        if target.runner is None or target.runner.done():
            target.runner = asyncio.create_task(self._run(target, delay))

    async def _run(self, target: Target, delay: float) -> None:
        try:
            while True:
                # debounce: restart the wait while changes keep coming
                while delay > 0:
                    target.wake.clear()
                    try:
                        await asyncio.wait_for(target.wake.wait(), delay)
                    except asyncio.TimeoutError:
                        break
                target.wake.clear()  # changes from here on make this analysis stale
                snap = self.snapshot(target.key)
                if snap is None:
                    return
                analysis = await self.analyse(snap)
                if target.key not in self.targets:
                    return
                if target.wake.is_set() or self.wanted_version(target.key) != snap.version:
                    # stale: drop it; analyse the newest version once the typing pauses
                    delay = self.ls.config.for_path(self.path_for(target.key)).lint_debounce_ms / 1000
                    continue
                if not self.ls.pull_diagnostics:
                    self.publish(analysis)
                return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep serving
            self.ls.log(types.MessageType.Error, f"gradtrace: scheduling {target.key} failed: {exc!r}")

    def publish(self, analysis: Analysis) -> None:
        """Push the diagnostics (static + probe) of every URI the analysis covers."""
        target = self.targets.get(analysis.key)
        if target is None:
            return
        uris = list(analysis.where.uris)
        for uri in uris:
            items = self.items_for(analysis, uri)
            version = analysis.version if not analysis.where.cells else self._doc_version(uri)
            self.ls.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, diagnostics=items, version=version)
            )
        for gone in target.published - set(uris):
            self.ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=gone, diagnostics=[]))
        target.published = set(uris)

    def _doc_version(self, uri: str):
        try:
            return self.ls.workspace.get_text_document(uri).version
        except Exception:
            return None

    def items_for(self, analysis: Analysis, uri: str) -> list[types.Diagnostic]:
        items = [d for d, _ in analysis.diagnostics.get(uri, [])]
        items += [d for d, _ in self.ls.probe.diagnostics(analysis, uri)]
        return items

    async def diagnostics_for_pull(self, uri: str) -> tuple[str, list[types.Diagnostic]] | None:
        key = self.target_key(uri)
        if key not in self.targets:
            return None
        analysis = await self.ensure(key)
        if analysis is None:
            return None
        result_id = f"{analysis.generation}:{analysis.version}:{self.ls.probe.generation(analysis.where.path)}"
        if analysis.where.cells:
            result_id += f":{self._doc_version(uri)}"
        return result_id, self.items_for(analysis, uri)

    def refresh_all(self) -> None:
        """Settings or probe results changed: re-publish (push) or ask the client to pull again."""
        if self.ls.pull_diagnostics:
            self.request_refresh()
        else:
            for key in list(self.targets):
                self.schedule(key, 0.0)

    def request_refresh(self, delay: float = 0.0) -> None:
        if not self.ls.pull_diagnostics:
            return
        if not self.ls.supports_refresh:
            # no way to make this client pull again: publish instead
            for key in list(self.targets):
                self.schedule(key, 0.0)
            return
        loop = asyncio.get_running_loop()
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()

        def fire():
            self._refresh_handle = None
            try:
                self.ls.workspace_diagnostic_refresh(None)
            except Exception as exc:
                self.ls.log(types.MessageType.Warning, f"workspace/diagnostic/refresh failed: {exc!r}")

        self._refresh_handle = loop.call_later(delay, fire)

    def close(self, key: str) -> None:
        target = self.targets.pop(key, None)
        self.analyses.pop(key, None)
        if target is None:
            return
        if target.runner is not None and not target.runner.done():
            target.runner.cancel()
        if not self.ls.pull_diagnostics:
            for uri in target.published | ({key} if not target.notebook else set()):
                self.ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    def changed(self, key: str) -> None:
        """A document's text changed: analyse it (onType) and the open files that import it.

        Pull clients ask for the diagnostics after each change; the analysis starts now all the same, so
        their request finds it under way (or done) instead of starting it."""
        if not self._on_save(key):
            self.schedule(key)
        self.dependents_changed(key)

    def dependents_changed(self, key: str) -> None:
        path = self.path_for(key)
        if not os.path.isabs(path):
            return
        stem = os.path.splitext(os.path.basename(path))[0]
        if not stem.isidentifier():
            return
        pattern = re.compile(rf"^\s*(from\s+[\w.]*\b{re.escape(stem)}\b|import\s+.*\b{re.escape(stem)}\b)", re.M)
        root = self.ls.project_root(path)
        hit = False
        for other_key, analysis in list(self.analyses.items()):
            if other_key == key or self.ls.project_root(self.path_for(other_key)) != root:
                continue
            if pattern.search("\n".join(analysis.where.lines)):
                self.analyses.pop(other_key, None)  # its cross-file facts are stale
                hit = True
                if not self.ls.pull_diagnostics:
                    self.schedule(other_key, DEPENDENT_DELAY)
        if hit and self.ls.pull_diagnostics:
            self.request_refresh(DEPENDENT_DELAY)


# ---- keeping findings across a syntax error ---------------------------------------------------


def relocate(finding: Finding, old: list[str], new: list[str]) -> Finding | None:
    """`finding` moved to where its lines now are (same text), or None when they are gone."""
    first, last = finding.line - 1, finding.end_line - 1
    if not (0 <= first <= last < len(old)):
        return None
    block = old[first:last + 1]
    for distance in range(RELOCATE_WINDOW):
        for start in {first - distance, first + distance}:
            if 0 <= start and start + len(block) <= len(new) and new[start:start + len(block)] == block:
                return shift(finding, start - first, old, new)
    return None


def shift(finding: Finding, delta: int, old: list[str], new: list[str]) -> Finding:
    def same(line: int) -> bool:
        return 0 < line <= len(old) and 0 < line + delta <= len(new) and old[line - 1] == new[line + delta - 1]

    fix = finding.fix
    if fix is not None:
        if all(same(e.line) and same(e.end_line) for e in fix.edits):
            fix = Fix(fix.title, fix.safe, tuple(dataclasses.replace(e, line=e.line + delta, end_line=e.end_line + delta)
                                                 for e in fix.edits))
        else:
            fix = None
    related = [dataclasses.replace(r, line=r.line + delta, end_line=r.end_line + delta)
               if r.path == finding.path and same(r.line) else r
               for r in finding.related if r.path != finding.path or same(r.line)]
    return dataclasses.replace(finding, line=finding.line + delta, end_line=finding.end_line + delta, fix=fix,
                               related=related)


def carry_over(previous: Analysis | None, lines: list[str], current: list[Finding]) -> list[Finding]:
    """Mid-typing syntax error: keep the last good findings whose lines are unchanged, away from the error."""
    if previous is None or not previous.clean_parse:
        return []
    broken = {f.line for f in current if f.code == "GT000"}
    kept = []
    for f in previous.findings:
        if f.code in ("GT000", "GT001"):
            continue
        moved = relocate(f, previous.where.lines, lines)
        if moved is not None and not any(moved.line <= b <= moved.end_line for b in broken):
            kept.append(moved)
    return kept


# ---- handlers ---------------------------------------------------------------------------------


def did_open(ls: GradtraceServer, params: types.DidOpenTextDocumentParams) -> None:
    """LSP handler for textDocument/didOpen."""
    uri = params.text_document.uri
    if ls.documents.target_key(uri) != uri:
        return  # a notebook cell: the notebook handlers own it
    if not is_python(params.text_document.language_id, uri):
        return
    ls.documents.open_target(uri)
    ls.set_overlay(uri, params.text_document.text)
    if ls.documents._on_save(uri):
        ls.documents.targets[uri].pinned = (params.text_document.version, params.text_document.text)
    if not ls.pull_diagnostics:
        ls.documents.schedule(uri, 0.0)
    ls.documents.dependents_changed(uri)


PYTHON_LANGUAGES = ("python", "")
PYTHON_SUFFIXES = (".py", ".pyi", ".pyw")


def is_python(language_id: str | None, uri: str) -> bool:
    """Clients send what their selector matched; a server attached to every buffer must not lint prose."""
    if language_id in PYTHON_LANGUAGES or language_id is None:
        return True
    return uri.split("?")[0].split("#")[0].endswith(PYTHON_SUFFIXES)


def did_change(ls: GradtraceServer, params: types.DidChangeTextDocumentParams) -> None:
    """LSP handler for textDocument/didChange (pygls has applied the change already)."""
    uri = params.text_document.uri
    if uri not in ls.documents.targets:
        return
    try:
        ls.set_overlay(uri, ls.workspace.get_text_document(uri).source)
    except Exception:
        pass
    ls.documents.changed(uri)


def did_save(ls: GradtraceServer, params: types.DidSaveTextDocumentParams) -> None:
    """LSP handler for textDocument/didSave."""
    uri = params.text_document.uri
    docs = ls.documents
    if uri not in docs.targets:
        return
    if os.path.basename(docs.path_for(uri)) == "pyproject.toml":
        ls.config.forget_pyproject()
    if docs._on_save(uri):
        doc = ls.workspace.get_text_document(uri)
        docs.targets[uri].pinned = (doc.version, doc.source)
        if ls.pull_diagnostics:
            docs.request_refresh()
        else:
            docs.schedule(uri, 0.0)
    elif not ls.pull_diagnostics:
        docs.schedule(uri, 0.0)


def did_close(ls: GradtraceServer, params: types.DidCloseTextDocumentParams) -> None:
    """LSP handler for textDocument/didClose."""
    uri = params.text_document.uri
    if uri in ls.documents.targets:
        ls.documents.close(uri)
        ls.set_overlay(uri, None)


def register(server: GradtraceServer) -> None:
    server.feature(types.TEXT_DOCUMENT_DID_OPEN)(did_open)
    server.feature(types.TEXT_DOCUMENT_DID_CHANGE)(did_change)
    server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))(did_save)
    server.feature(types.TEXT_DOCUMENT_DID_CLOSE)(did_close)
