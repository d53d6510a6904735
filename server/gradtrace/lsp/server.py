"""The gradtrace language server: state on a `LanguageServer` subclass, handlers in sibling modules.

`serve()` runs it on stdio (`gradtrace server`). Client capabilities decide the transport of
diagnostics: clients that can pull (`textDocument/diagnostic`) pull, the others get them pushed.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.uris import to_fs_path

from gradtrace import __version__
from gradtrace.analysis.project import Project, find_project_root
from gradtrace.analysis.project_index import ProjectIndex
from gradtrace.lsp import code_actions, commands, diagnostics, gradient_map, hover, notebook, sync
from gradtrace.lsp.config import NAMESPACE, SettingsStore
from gradtrace.lsp.probe import ProbeService
from gradtrace.lsp.scheduler import Documents
from gradtrace.lsp.worker import AnalysisWorkers

LOG_LEVEL_MAX = {"error": 1, "warning": 2, "info": 3, "debug": 4}
logger = logging.getLogger(__name__)


class GradtraceProtocol(LanguageServerProtocol):
    """pygls cancels only requests that have not started; a running probe is cancelled here. A cancel for
    a request already answered is normal (the client sent it while the answer was on its way): nothing
    to log. An error a handler raises on purpose (bad arguments) is answered without a traceback."""

    def _handle_request(self, msg_id, method_name, params):
        if method_name == types.WORKSPACE_EXECUTE_COMMAND and getattr(params, "command", None) == commands.PROBE:
            self._server.probe.request_ids.append(msg_id)
        return super()._handle_request(msg_id, method_name, params)

    def _send_handler_result(self, future, *, msg_id):
        if msg_id in self._server.probe.request_ids:  # answered without running (bad arguments)
            self._server.probe.request_ids.remove(msg_id)
        if not future.cancelled() and isinstance(future.exception(), JsonRpcException):
            self._request_futures.pop(msg_id, None)
            error = future.exception()
            logger.info("Request %s answered with error %s: %s", msg_id, error.code, error.message)
            self._send_response(msg_id, error=error.to_response_error())
            return None
        return super()._send_handler_result(future, msg_id=msg_id)

    def _handle_cancel_notification(self, msg_id):
        self._server.probe.cancel_request(msg_id)
        future = self._request_futures.pop(msg_id, None)
        if future is not None and future.cancel():
            logger.info("Cancelled request %s", msg_id)


class GradtraceServer(LanguageServer):
    """Holds the editor settings, open documents and their analyses, projects and the probe."""

    def __init__(self, analysis_workers: int = 2, analysis_process: bool = True):
        super().__init__(
            "gradtrace",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            notebook_document_sync=notebook.NOTEBOOK_SYNC,
            protocol_cls=GradtraceProtocol,
        )
        self.config = SettingsStore()
        self.documents = Documents(self)
        self.probe = ProbeService(self)
        # threads wait on the analysis process (or analyse themselves when there is none)
        self.analysis_pool = ThreadPoolExecutor(max_workers=analysis_workers, thread_name_prefix="gradtrace-analysis")
        self.worker = AnalysisWorkers(analysis_workers, use_process=analysis_process)
        self._projects: dict[str, Project] = {}
        self._indexes: dict[str, ProjectIndex] = {}
        self._roots: dict[str, str] = {}
        self._projects_lock = threading.Lock()
        self._warned: set[str] = set()
        self.settings_problems: list[str] = []
        self.had_initialization_options = False

    # ---- client capabilities -------------------------------------------------------------------

    @property
    def encoding(self) -> str:
        enc = self.workspace.position_encoding or types.PositionEncodingKind.Utf16
        return str(getattr(enc, "value", enc))

    @property
    def pull_diagnostics(self) -> bool:
        td = self.client_capabilities.text_document
        return bool(td and td.diagnostic is not None)

    @property
    def supports_refresh(self) -> bool:
        ws = self.client_capabilities.workspace
        return bool(ws and ws.diagnostics and ws.diagnostics.refresh_support)

    @property
    def supports_related_information(self) -> bool:
        td = self.client_capabilities.text_document
        if td is None:
            return False
        if self.pull_diagnostics:
            return bool(td.diagnostic.related_information) or bool(
                td.publish_diagnostics and td.publish_diagnostics.related_information)
        return bool(td.publish_diagnostics and td.publish_diagnostics.related_information)

    def supports_resolve(self, prop: str) -> bool:
        td = self.client_capabilities.text_document
        ca = td.code_action if td else None
        return bool(ca and ca.resolve_support and prop in (ca.resolve_support.properties or []))

    # ---- projects ------------------------------------------------------------------------------

    def project_root(self, path: str) -> str | None:
        if not os.path.isabs(path):
            return None
        directory = os.path.dirname(path)
        with self._projects_lock:
            root = self._roots.get(directory)
        if root is None:
            root = find_project_root(path)
            with self._projects_lock:
                self._roots[directory] = root
        return root

    def project_for(self, path: str) -> Project | None:
        return self._per_project(path, self._projects, Project)

    def index_for(self, path: str) -> ProjectIndex | None:
        """The import index of the project `path` belongs to (None for a path that is not a file's)."""
        return self._per_project(path, self._indexes, ProjectIndex)

    def _per_project(self, path: str, made: dict, make):
        root = self.project_root(path)
        if root is None:
            return None
        with self._projects_lock:
            if root not in made:
                made[root] = make(root)
            return made[root]

    def set_overlay(self, uri: str, text: str | None) -> None:
        path = to_fs_path(uri) if uri.startswith("file:") else None
        if path:
            project = self.project_for(path)
            if project is not None:
                project.set_overlay(path, text)
                self.worker.set_overlay(project.root, os.path.abspath(path), text)

    # ---- messages ------------------------------------------------------------------------------

    def log(self, kind: types.MessageType, message: str) -> None:
        level = self.config.global_settings.log_level
        if int(kind) <= LOG_LEVEL_MAX.get(level, 3):
            self.window_log_message(types.LogMessageParams(type=kind, message=message))

    def warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning,
                                                             message=f"gradtrace: {message}"))
            self.log(types.MessageType.Warning, message)

    def apply_settings(self, options, origin: str) -> bool:
        """New editor settings; bad values are shown (naming the setting) and left at their defaults."""
        before = self.config.generation
        problems = self.config.update(options)
        for problem in problems:
            message = f"gradtrace: invalid setting {problem} — using the default instead."
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=message))
            self.log(types.MessageType.Warning, f"{message} ({origin})")
        return self.config.generation != before


# ---- lifecycle and settings handlers ------------------------------------------------------------


def initialize(ls: GradtraceServer, params: types.InitializeParams) -> None:
    """LSP handler for initialize: settings from initializationOptions."""
    options = params.initialization_options
    ls.had_initialization_options = bool(options)
    if options:
        problems = ls.config.update(options)
        ls.settings_problems = [str(p) for p in problems]


async def initialized(ls: GradtraceServer, params: types.InitializedParams) -> None:
    """LSP handler for initialized: report bad initial settings, fetch settings if none were given."""
    for problem in ls.settings_problems:
        ls.window_show_message(types.ShowMessageParams(
            type=types.MessageType.Warning,
            message=f"gradtrace: invalid setting {problem} — using the default instead."))
    ls.settings_problems = []
    ls.worker.start()
    await watch_pyproject(ls)
    mode = "pull" if ls.pull_diagnostics else "push"
    ls.log(types.MessageType.Info, f"gradtrace {__version__} ready: {mode} diagnostics, {ls.encoding} positions")
    if not ls.had_initialization_options:
        await pull_configuration(ls)


async def watch_pyproject(ls: GradtraceServer) -> None:
    """Ask the client to report pyproject.toml changes (`[tool.gradtrace]` applies to open files)."""
    ws = ls.client_capabilities.workspace
    if not (ws and ws.did_change_watched_files and ws.did_change_watched_files.dynamic_registration):
        return
    try:
        await ls.client_register_capability_async(types.RegistrationParams(registrations=[types.Registration(
            id="gradtrace-pyproject", method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
            register_options=types.DidChangeWatchedFilesRegistrationOptions(
                watchers=[types.FileSystemWatcher(glob_pattern="**/pyproject.toml")]))]))
    except Exception as exc:
        ls.log(types.MessageType.Warning, f"gradtrace: cannot watch pyproject.toml files: {exc!r}")


async def pull_configuration(ls: GradtraceServer) -> None:
    ws = ls.client_capabilities.workspace
    if not (ws and ws.configuration):
        return
    try:
        result = await ls.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section=NAMESPACE)]))
    except Exception as exc:
        ls.log(types.MessageType.Warning, f"gradtrace: cannot read the client's configuration: {exc!r}")
        return
    value = result[0] if result else None
    if isinstance(value, dict) and ls.apply_settings(value, "workspace/configuration"):
        ls.documents.refresh_all()


async def did_change_configuration(ls: GradtraceServer, params: types.DidChangeConfigurationParams) -> None:
    """LSP handler for workspace/didChangeConfiguration."""
    settings = params.settings
    if isinstance(settings, dict) and settings:
        if ls.apply_settings(settings, "workspace/didChangeConfiguration"):
            ls.documents.refresh_all()
    else:
        await pull_configuration(ls)


def did_change_watched_files(ls: GradtraceServer, params: types.DidChangeWatchedFilesParams) -> None:
    """LSP handler for workspace/didChangeWatchedFiles: a pyproject.toml changed."""
    if any(c.uri.endswith("pyproject.toml") for c in params.changes):
        ls.config.forget_pyproject()
        ls.config.generation += 1
        ls.documents.refresh_all()


def shutdown(ls: GradtraceServer, *args) -> None:
    """LSP handler for shutdown."""
    ls.probe.shutdown()
    ls.worker.shutdown()
    ls.analysis_pool.shutdown(wait=False, cancel_futures=True)


def create_server() -> GradtraceServer:
    server = GradtraceServer()
    server.feature(types.INITIALIZE)(initialize)
    server.feature(types.INITIALIZED)(initialized)
    server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(did_change_configuration)
    server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)(did_change_watched_files)
    server.feature(types.SHUTDOWN)(shutdown)
    sync.register(server)
    notebook.register(server)
    diagnostics.register(server)
    hover.register(server)
    code_actions.register(server)
    commands.register(server)
    gradient_map.register(server)
    return server


def serve(server: GradtraceServer | None = None) -> None:
    """Run the language server on stdio."""
    # Analysis threads hold the GIL for long stretches of pure Python; a short switch interval lets
    # the event-loop thread answer hovers and code actions between them (default is 5 ms a turn).
    sys.setswitchinterval(0.0005)
    from gradtrace.lsp import transport

    transport.start_io(server or create_server())  # pygls's loop, resynchronising after malformed frames
