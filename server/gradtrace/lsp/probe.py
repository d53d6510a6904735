"""The probe, seen from the editor: run it with progress and cancellation, keep its last result.

The launcher (`gradtrace.probe.launcher.ProbeLauncher`) runs the user's file in a sandboxed child
process and returns the probe JSON (DESIGN §3). Its findings become diagnostics with the source
"gradtrace probe", merged with the static ones. A result belongs to the text it ran on: after an edit,
its findings are marked stale (and the gradient map says so); a finding disappears when its own lines
or the lines that caused it (the cut it names) change. Clients that pull diagnostics get them through
`workspace/diagnostic/refresh`; a pull client without refresh support (Neovim 0.11) gets them pushed.
Hovers read the parameters' last results.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from gradtrace import records
from gradtrace.engine import read_source
from gradtrace.findings import Finding
from gradtrace.lsp.diagnostics import PROBE_SOURCE, to_diagnostic
from gradtrace.positions import split_lines
from gradtrace.records import field, record

if TYPE_CHECKING:
    from gradtrace.lsp.analyses import Analysis
    from gradtrace.lsp.server import GradtraceServer

REQUEST_FAILED = int(types.LSPErrorCodes.RequestFailed)


class ProbeError(JsonRpcException):
    """An LSP error answer (RequestFailed) with a message meant for the user."""

    CODE = REQUEST_FAILED


@record
class ProbeRecord:
    """The last probe result for one file."""

    path: str
    result: dict
    lines: list[str]  # the file's text when it was probed (findings are anchored to it)
    findings: list[Finding] = field(default_factory=list)
    when: float = field(default_factory=time.time)

    def stale_for(self, lines: list[str]) -> bool:
        """The text has changed since this probe ran."""
        return lines != self.lines


STALE = "stale probe result (the file changed since the probe ran; run it again): "


class ProbeService:
    def __init__(self, ls: GradtraceServer):
        self.ls = ls
        self.launcher_factory = None  # tests inject a fake; None: the real launcher
        self._launcher = None
        self.records: dict[str, ProbeRecord] = {}  # path -> the last result covering that file
        self.parameters: dict[str, list[tuple[dict, ProbeRecord]]] = {}  # path -> parameters defined there
        self._generation: dict[str, int] = {}
        self._running: dict[str, threading.Event] = {}
        self._cache: dict[tuple, list] = {}
        self._pushed: dict[str, tuple] = {}  # uri -> what was last pushed there (pull clients without refresh)
        self.request_ids: list = []  # ids of gradtrace.probe requests, in arrival order (see server.py)
        self._by_request: dict[object, threading.Event] = {}
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gradtrace-probe")

    # ---- launcher ----------------------------------------------------------------------------

    def launcher(self):
        if self._launcher is None:
            factory = self.launcher_factory
            if factory is None:
                try:
                    from gradtrace.probe.launcher import ProbeLauncher
                except ImportError as exc:
                    raise ProbeError(
                        "gradtrace.probe is not available: the probe component is not installed "
                        f"(gradtrace.probe.launcher: {exc}). Static diagnostics still work."
                    ) from exc
                factory = ProbeLauncher
            self._launcher = factory()
        return self._launcher

    def cancel_request(self, msg_id) -> None:
        """$/cancelRequest for a probe request: stop its run (the launcher kills the child)."""
        event = self._by_request.get(msg_id)
        if event is not None:
            event.set()
        elif msg_id in self.request_ids:  # not started yet: it will start cancelled
            self._by_request[msg_id] = threading.Event()
            self._by_request[msg_id].set()

    def shutdown(self) -> None:
        for event in self._running.values():
            event.set()
        if self._launcher is not None:
            try:
                self._launcher.shutdown()
            except Exception as exc:
                self.ls.log(types.MessageType.Warning, f"gradtrace probe: shutdown failed: {exc!r}")
        self.pool.shutdown(wait=False, cancel_futures=True)

    # ---- results as diagnostics ----------------------------------------------------------------

    def generation(self, path: str) -> int:
        return self._generation.get(path, 0)

    def diagnostics(self, analysis: Analysis, uri: str) -> list[tuple[types.Diagnostic, Finding]]:
        """The probe's diagnostics for `uri` in the analysed text: merged with the static ones, or, for a pull
        client that cannot be asked to pull again, pushed on their own (then none are returned here)."""
        items = self._current(analysis, uri)
        if self.ls.pull_diagnostics and not self.ls.supports_refresh:
            self._push(uri, analysis.version, items)
            return []
        return items

    def _current(self, analysis: Analysis, uri: str) -> list[tuple[types.Diagnostic, Finding]]:
        record = self.records.get(analysis.where.path)
        if record is None or not record.findings:
            return []
        ident = (analysis.key, analysis.version, analysis.generation, self.generation(analysis.where.path), uri)
        cached = self._cache.get(ident)
        if cached is not None:
            return cached
        from gradtrace.lsp.relocation import relocate

        old, new = record.lines, analysis.where.lines
        stale = record.stale_for(new)
        out = []
        for finding in record.findings:
            moved = relocate(finding, old, new)
            if moved is None or (stale and not _causes_unchanged(finding, old, new)):
                continue  # the code it was about, or the code that caused it, has changed
            if stale:
                moved = records.replace(moved, message=STALE + moved.message, data={**moved.data, "stale": True})
            target_uri, diagnostic = to_diagnostic(
                moved, analysis.where, self.ls.encoding, version=analysis.version,
                related_support=self.ls.supports_related_information, source=PROBE_SOURCE,
            )
            if target_uri == uri:
                out.append((diagnostic, moved))
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[ident] = out
        return out

    def _push(self, uri: str, version, items) -> None:
        signature = tuple((d.range.start.line, d.range.start.character, d.code, d.message) for d, _ in items)
        if self._pushed.get(uri) == signature:
            return
        self._pushed[uri] = signature
        self.ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri=uri, diagnostics=[d for d, _ in items], version=version))

    def _store(self, path: str, result: dict) -> set[str]:
        """Keep `result`; return the paths whose diagnostics or hovers changed."""
        by_path: dict[str, list[Finding]] = {}
        for item in result.get("findings") or []:
            try:
                finding = Finding.from_json(item)
            except (KeyError, TypeError, ValueError) as exc:
                self.ls.log(types.MessageType.Warning, f"gradtrace probe: malformed finding {item!r}: {exc}")
                continue
            by_path.setdefault(os.path.abspath(finding.path), []).append(finding)
        touched = {path} | set(by_path)
        old = self.records.get(path)
        if old is not None:  # files the previous run of this file reported on
            touched |= {p for p, r in self.records.items() if r.result is old.result}
        for p in touched:
            self.records.pop(p, None)
            self.parameters.pop(p, None)
        for p in {path} | set(by_path):
            text, _problem = read_source(p)
            self.records[p] = ProbeRecord(p, result, split_lines(text or ""), by_path.get(p, []))
        for param in result.get("parameters") or []:
            where = param.get("defined_at") or {}
            p = os.path.abspath(where["path"]) if where.get("path") else path
            record = self.records.get(p) or self.records[path]
            self.parameters.setdefault(p, []).append((param, record))
            if p != path:
                self.parameters.setdefault(path, []).append((param, self.records[path]))
        for p in touched:
            self._generation[p] = self._generation.get(p, 0) + 1
        return touched

    # ---- the command -------------------------------------------------------------------------

    async def run(self, uri: str) -> dict:
        """Probe the saved file behind `uri`; findings become diagnostics, the result is returned."""
        # requests start in arrival order: this run is the oldest one not yet started
        request_id = self.request_ids.pop(0) if self.request_ids else None
        cancel = self._by_request.setdefault(request_id, threading.Event()) if request_id is not None \
            else threading.Event()
        try:
            return await self._run(uri, cancel)
        finally:
            self._by_request.pop(request_id, None)

    async def _run(self, uri: str, cancel: threading.Event) -> dict:
        docs = self.ls.documents
        path = docs.path_for(docs.target_key(uri))
        if not os.path.isabs(path) or not os.path.isfile(path):
            raise ProbeError(f"gradtrace.probe needs a saved file on disk; {uri} is not one.")
        settings = self.ls.config.for_path(path)
        if not settings.probe_enable:
            raise ProbeError("gradtrace.probe is disabled by the setting gradtrace.probe.enable.")
        launcher = self.launcher()
        try:
            disk, _ = read_source(path)
            if disk is not None and self.ls.workspace.get_text_document(uri).source != disk:
                self.ls.window_show_message(types.ShowMessageParams(
                    type=types.MessageType.Warning,
                    message="gradtrace probe: the file has unsaved changes; probing the saved version."))
        except Exception:
            pass
        previous = self._running.get(path)
        if previous is not None:
            previous.set()  # a new run replaces the one still going
        self._running[path] = cancel
        progress = await self._begin_progress(os.path.basename(path), cancel)
        loop = asyncio.get_running_loop()

        def report(message: str) -> None:
            if progress is not None:
                loop.call_soon_threadsafe(self._report, progress, str(message))

        def work() -> dict:
            return launcher.run(
                path, python=settings.probe_interpreter[0] if settings.probe_interpreter else None,
                timeout=settings.probe_timeout, memory_mb=settings.probe_memory_mb, device=settings.probe_device,
                cancel=cancel, progress=report,
            )

        outcome = "failed"
        try:
            result = await asyncio.shield(loop.run_in_executor(self.pool, work))
            if cancel.is_set() and self._running.get(path) is not cancel:
                outcome = "replaced by a newer run"
                raise ProbeError("gradtrace probe: cancelled, a newer run replaced it.")
            if cancel.is_set():
                outcome = "cancelled"
                raise ProbeError("gradtrace probe: cancelled.", code=int(types.LSPErrorCodes.RequestCancelled))
        except asyncio.CancelledError:
            cancel.set()
            outcome = "cancelled"
            raise
        except ProbeError:
            raise
        except Exception as exc:
            self.ls.log(types.MessageType.Error, f"gradtrace probe on {path} failed: {exc!r}")
            raise ProbeError(f"gradtrace probe failed: {type(exc).__name__}: {exc}") from exc
        finally:
            if self._running.get(path) is cancel:
                self._running.pop(path, None)
            if outcome != "ok" and progress is not None:
                self._end(progress, outcome)
        if not isinstance(result, dict):
            raise ProbeError(f"gradtrace probe returned {type(result).__name__}, not a result object.")
        outcome = "ok"
        summary = summarise(result)
        if progress is not None:
            self._end(progress, summary)
        touched = self._store(path, result)
        self.ls.log(types.MessageType.Info, f"gradtrace probe {path}: {summary}")
        status = result.get("status")
        self.ls.window_show_message(types.ShowMessageParams(
            type=types.MessageType.Info if status == "ok" else types.MessageType.Warning,
            message=f"gradtrace probe: {summary}"))
        self._refresh(touched)
        return result

    def _refresh(self, paths: set[str]) -> None:
        docs = self.ls.documents
        if self.ls.pull_diagnostics and self.ls.supports_refresh:
            docs.request_refresh()
            return
        for key in list(docs.targets):
            if docs.path_for(key) not in paths:
                continue
            analysis = docs.analyses.get(key)
            current = analysis is not None and analysis.version == docs.current_version(key)
            if self.ls.pull_diagnostics:  # no refresh to ask for: push the probe's own diagnostics now
                if analysis is not None:
                    for uri in analysis.where.uris:
                        self.diagnostics(analysis, uri)
            elif current:
                docs.publish(analysis)
            else:
                docs.schedule(key, 0.0)

    async def _begin_progress(self, name: str, cancel: threading.Event):
        caps = self.ls.client_capabilities.window
        if not (caps and caps.work_done_progress):
            return None
        token = f"gradtrace-probe-{uuid.uuid4()}"
        try:
            await self.ls.work_done_progress.create_async(token)
        except Exception as exc:
            self.ls.log(types.MessageType.Warning, f"gradtrace probe: no progress report ({exc!r})")
            return None
        self.ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(
            title="gradtrace probe", message=f"probing {name}", cancellable=True, percentage=0))
        future = self.ls.work_done_progress.tokens.get(token)
        if future is not None:
            future.add_done_callback(lambda f: cancel.set() if f.cancelled() else None)
        return token

    def _report(self, token: str, message: str) -> None:
        self.ls.work_done_progress.report(token, types.WorkDoneProgressReport(message=message))

    def _end(self, token: str, message: str) -> None:
        self.ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
        self.ls.work_done_progress.tokens.pop(token, None)


def _causes_unchanged(finding: Finding, old: list[str], new: list[str]) -> bool:
    """Every line of this file the finding names as its cause (related locations, the cut) still reads the same."""
    from gradtrace.lsp.relocation import relocate

    lines = {r.line for r in finding.related if r.path == finding.path}
    cut = finding.data.get("cut") if isinstance(finding.data, dict) else None
    if isinstance(cut, dict) and cut.get("path") == finding.path and isinstance(cut.get("line"), int):
        lines.add(cut["line"])
    return all(relocate(records.replace(finding, line=ln, end_line=ln, related=[], fix=None), old, new)
               is not None for ln in lines)


def summarise(result: dict) -> str:
    status = result.get("status", "?")
    if status != "ok":
        err = result.get("error") or {}
        where = f" ({os.path.basename(err['path'])}:{err['line']})" if err.get("path") and err.get("line") else ""
        detail = f": {err.get('type', '')} {err.get('message', '')}".rstrip() if err else ""
        return f"{status}{detail}{where}"
    params = result.get("parameters") or []
    counts: dict[str, int] = {}
    for p in params:
        counts[p.get("grad", "?")] = counts.get(p.get("grad", "?"), 0) + 1
    bad = [f"{counts[k]} {label}" for k, label in (("none", "without gradient (None)"), ("zero", "with zero gradient"),
                                                    ("nonfinite", "with non-finite gradient")) if counts.get(k)]
    if not params:
        return "no trainable parameters found"
    if not bad:
        return f"all {len(params)} parameters get a gradient"
    return f"{', '.join(bad)} of {len(params)} parameters"
