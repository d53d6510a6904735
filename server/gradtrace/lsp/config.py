"""Settings glue: editor settings (initializationOptions, didChangeConfiguration) + `[tool.gradtrace]`.

Editor settings are parsed by `gradtrace.settings.server_settings_from_mapping`; a bad value is
shown to the user (naming the setting) and falls back to its default. Per document, the lint
settings are the nearest pyproject.toml's `[tool.gradtrace]` with the editor's keys laid over it.

The settings (namespace `gradtrace`, nested or dotted keys, defaults in brackets):
  lint.enable [true]   lint.run ["onType" | "onSave"]   lint.debounce [40 ms]
  lint.select / lint.ignore / lint.extendIgnore [codes or prefixes]   lint.exclude [globs]
  lint.perFileIgnores [{glob: codes}]   lint.severity [{code: error|warning|information|hint}]
  fixAll [true]   codeAction.fixViolation.enable [true]   codeAction.disableRuleComment.enable [true]
  showSyntaxErrors [true]: false hides GT000 where the editor already shows Python's syntax errors
  lens.enable [true]: a code lens above each loss, naming what it does not reach
  inlayHints.enable [false]: `∅∇` after an assignment whose value lost its gradient on the way to a loss
  probe.enable [true]   probe.timeout [60 s]   probe.memory [4096 MB]   probe.device ["cpu"]
  probe.interpreter, or interpreter [the server's Python]: a path or [path, args...]
  logLevel ["info" | "error" | "warning" | "debug"]
Client-only keys (importStrategy, trace.server, path, showNotifications, cwd) are accepted and ignored.
"""

from __future__ import annotations

import os
import threading

from pygls.uris import to_fs_path

from gradtrace.records import field, record
from gradtrace.settings import (
    LintSettings,
    ServerSettings,
    SettingsError,
    find_pyproject,
    load_pyproject_settings,
    server_settings_from_mapping,
)

NAMESPACE = "gradtrace"


def extract_settings(options) -> tuple[dict | None, list[tuple[str, dict]]]:
    """The shapes editors send -> (global settings, [(folder path, folder settings)]).

    Accepted: `{"gradtrace": {...}}`; the tools-template shape
    `{"settings": [{"workspace": uri, ...}], "globalSettings": {...}}`; `{"settings": {...}}`;
    or the settings object itself.
    """
    if not isinstance(options, dict):
        return (options if options is not None else None), []
    if NAMESPACE in options and isinstance(options[NAMESPACE], dict):
        return options[NAMESPACE], []
    settings = options.get("settings")
    if isinstance(settings, list):
        folders = []
        for entry in settings:
            if isinstance(entry, dict) and isinstance(entry.get("workspace"), str):
                uri = entry["workspace"]
                path = to_fs_path(uri) if "://" in uri else uri
                if path:
                    folders.append((os.path.abspath(path), entry))
        return options.get("globalSettings") if isinstance(options.get("globalSettings"), dict) else {}, folders
    if isinstance(settings, dict) and ("globalSettings" in options or len(options) == 1):
        return settings, []
    return options, []


@record
class SettingsStore:
    """Editor settings (global and per workspace folder) and a cache of projects' pyproject settings."""

    global_settings: ServerSettings = field(default_factory=ServerSettings)
    folders: list[tuple[str, ServerSettings]] = field(default_factory=list)
    generation: int = 0
    _pyproject: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, options) -> list[SettingsError]:
        """Replace the editor settings from `options`; return the problems to show."""
        global_map, folder_maps = extract_settings(options)
        problems: list[SettingsError] = []
        settings, errs = server_settings_from_mapping(global_map or {}, NAMESPACE)
        problems += errs
        folders = []
        for path, mapping in folder_maps:
            merged = dict(global_map or {})
            merged.update(mapping)
            folder_settings, errs = server_settings_from_mapping(merged, NAMESPACE)
            problems += [e for e in errs if str(e) not in {str(p) for p in problems}]
            folders.append((path, folder_settings))
        folders.sort(key=lambda item: len(item[0]), reverse=True)
        if settings != self.global_settings or folders != self.folders:
            self.global_settings, self.folders = settings, folders
            self.generation += 1
        return problems

    def for_path(self, path: str | None) -> ServerSettings:
        if path and self.folders:
            path = os.path.abspath(path)
            for root, settings in self.folders:
                if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
                    return settings
        return self.global_settings

    def lint_for(self, path: str | None) -> tuple[LintSettings, str | None]:
        """Effective lint settings for a file and a pyproject warning (None when fine)."""
        server = self.for_path(path)
        project, warning = self.project_settings(path)
        return server.lint_for(project), warning

    def project_settings(self, path: str | None) -> tuple[LintSettings, str | None]:
        """`[tool.gradtrace]` of the nearest pyproject.toml, cached by its modification time."""
        if not path:
            return LintSettings(), None
        pyproject = find_pyproject(path)
        if pyproject is None:
            return LintSettings(), None
        try:
            stamp = os.stat(pyproject).st_mtime_ns
        except OSError:
            return LintSettings(), None
        with self._lock:
            cached = self._pyproject.get(pyproject)
            if cached and cached[0] == stamp:
                return cached[1], cached[2]
        settings, warning = load_pyproject_settings(pyproject)
        with self._lock:
            self._pyproject[pyproject] = (stamp, settings, warning)
        return settings, warning

    def forget_pyproject(self) -> None:
        with self._lock:
            self._pyproject.clear()
