"""The analysis scheduler: when each open document (or notebook) is analysed, and what is published.

One *target* per text document or notebook. Changes wake the target's runner, which waits out a short
debounce, snapshots the text on the event loop, analyses it in the thread pool (never on the event
loop, so hovers stay responsive), and publishes only if the document has not moved on meanwhile —
stale results are dropped and the newest version analysed instead. Pull requests share the same
per-version analysis (one future per version and settings generation). When a document's code changes
(not only its comments), the open documents that import it, directly or through other modules (the
project index), are analysed again.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.uris import to_fs_path

from gradtrace.lsp import lens
from gradtrace.lsp.analyses import MAX_LIVE_CHARS, Analysis, Snapshot, compute
from gradtrace.lsp.diagnostics import LineMap
from gradtrace.positions import split_lines
from gradtrace.records import field, record

if TYPE_CHECKING:
    from gradtrace.lsp.server import GradtraceServer

DEPENDENT_DELAY = 0.3  # seconds: re-check files that import a changed one
MAX_LINE_SHOWN = 100_000  # characters of the first line kept for a document over the live limit


@record
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

    # ---- documents ---------------------------------------------------------------------------

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

    def doc_version(self, uri: str):
        try:
            return self.ls.workspace.get_text_document(uri).version
        except Exception:
            return None

    def current_version(self, key: str):
        target = self.targets.get(key)
        if target is None:
            return None
        if target.notebook:
            from gradtrace.lsp.notebook import notebook_version

            return notebook_version(self.ls, key)
        return self.doc_version(key)

    def wanted_version(self, key: str):
        target = self.targets.get(key)
        if target is not None and target.pinned is not None and self.on_save(key):
            return target.pinned[0]
        return self.current_version(key)

    def on_save(self, key: str) -> bool:
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
            if target.pinned is not None and self.on_save(key):
                version, text = target.pinned
            if len(text) > MAX_LIVE_CHARS:  # one finding, on its first line: no need to split it all
                where = LineMap(key, path, split_lines(text[:MAX_LINE_SHOWN])[:1])
            else:
                where = LineMap(key, path, split_lines(text))
        index = self.ls.index_for(path)
        if index is not None and len(text) <= MAX_LIVE_CHARS:
            index.update(path, text)  # this version's imports
        server_settings = self.ls.config.for_path(path)
        lint, warning = self.ls.config.lint_for(path if os.path.isabs(path) else None)
        if warning:
            self.ls.warn_once(warning)
        return Snapshot(
            key=key, version=version, path=path, text=text, where=where, lint=lint,
            generation=self.ls.config.generation, encoding=self.ls.encoding,
            related_support=self.ls.supports_related_information, enabled=server_settings.lint_enable,
            show_syntax_errors=server_settings.show_syntax_errors, root=self.ls.project_root(path),
        )

    # ---- analysis ----------------------------------------------------------------------------

    async def analyse(self, snap: Snapshot) -> Analysis:
        cached = self.analyses.get(snap.key)
        if cached and cached.version == snap.version and cached.generation == snap.generation:
            return cached
        ident = (snap.key, snap.version, snap.generation)
        future = self._inflight.get(ident)
        previous = self.analyses.get(snap.key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self.ls.analysis_pool, compute, self.ls, snap, previous)
            self._inflight[ident] = future
            future.add_done_callback(lambda _f: self._inflight.pop(ident, None))
        analysis = await asyncio.shield(future)
        if snap.key in self.targets:
            stored = self.analyses.get(snap.key)
            # keep the newest: ours, unless another analysis was stored while this one ran
            if stored is None or stored is previous or analysis.version == self.wanted_version(snap.key):
                self.analyses[snap.key] = analysis
                if stored is not None and stored.version != analysis.version and not analysis.reused:
                    self.dependents_changed(snap.key)  # its code changed: so may the files that import it
        if not getattr(future, "logged", False):
            future.logged = True  # type: ignore[attr-defined]
            for err in analysis.errors:
                self.ls.log(types.MessageType.Error, err)
            how = "mapped through a comment or whitespace edit" if analysis.reused else "analysed"
            self.ls.log(types.MessageType.Log, f"{os.path.basename(snap.path)} v{snap.version}: "
                        f"{len(analysis.findings)} findings in {analysis.seconds * 1000:.0f} ms ({how})")
        return analysis

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
            version = analysis.version if not analysis.where.cells else self.doc_version(uri)
            self.ls.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, diagnostics=items, version=version)
            )
        for gone in target.published - set(uris):
            self.ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=gone, diagnostics=[]))
        target.published = set(uris)

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
            result_id += f":{self.doc_version(uri)}"
        return result_id, self.items_for(analysis, uri)

    def refresh_all(self) -> None:
        """Settings or probe results changed: re-publish (push) or ask the client to pull again, and to ask for
        code lenses and inlay hints again."""
        if self.ls.pull_diagnostics:
            self.request_refresh()
        else:
            for key in list(self.targets):
                self.schedule(key, 0.0)
        lens.refresh(self.ls)

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

    def saved(self, key: str, pull_again: bool) -> None:
        """A document was saved: publish again (push), or, when what is analysed changed with the save,
        ask the client to pull again."""
        if not self.ls.pull_diagnostics:
            self.schedule(key, 0.0)
        elif pull_again:
            self.request_refresh()

    def changed(self, key: str) -> None:
        """A document's text changed: analyse it (onType). Pull clients ask for the diagnostics after each
        change; the analysis starts now all the same, so their request finds it under way (or done)."""
        if not self.on_save(key):
            self.schedule(key)

    def dependents_changed(self, key: str) -> None:
        """`key` was opened, closed or its code changed: analyse again the open documents that import it."""
        path = self.path_for(key)
        index = self.ls.index_for(path)
        if index is None:
            return
        importers = index.importer_paths(path, transitive=True)
        hit = False
        for other_key in list(self.targets):
            if other_key != key and os.path.abspath(self.path_for(other_key)) in importers:
                self.analyses.pop(other_key, None)  # its cross-file facts are stale
                hit = True
                if not self.ls.pull_diagnostics:
                    self.schedule(other_key, DEPENDENT_DELAY)
        if hit and self.ls.pull_diagnostics:
            self.request_refresh(DEPENDENT_DELAY)
        if hit:
            lens.refresh(self.ls)  # their code lenses wait for their new analysis
