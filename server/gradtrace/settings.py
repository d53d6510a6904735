"""Settings: one typed place for what the CLI, `[tool.gradtrace]` and the editor can set."""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field, fields, replace

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    tomllib = None

CODE_PREFIX = re.compile(r"^GT\d{0,3}$")
SEVERITY_NAMES = ("error", "warning", "information", "hint")


class SettingsError(ValueError):
    """A setting has a bad value; `name` says which one."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(frozen=True)
class LintSettings:
    select: tuple[str, ...] = ()  # empty: every rule
    ignore: tuple[str, ...] = ()
    per_file_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()
    severity: tuple[tuple[str, str], ...] = ()  # (code, severity) overrides
    exclude: tuple[str, ...] = ()

    def enabled(self, code: str, path: str | None = None) -> bool:
        if self.select and not any(code.startswith(s) for s in self.select):
            return False
        if any(code.startswith(i) for i in self.ignore):
            return False
        if path:
            norm = path.replace(os.sep, "/")
            for pattern, codes in self.per_file_ignores:
                if fnmatch.fnmatch(norm, pattern) or fnmatch.fnmatch(os.path.basename(norm), pattern) or (
                    fnmatch.fnmatch(norm, "*/" + pattern)
                ):
                    if any(code.startswith(c) for c in codes):
                        return False
        return True

    def severity_for(self, code: str, default: str) -> str:
        for c, sev in self.severity:
            if c == code:
                return sev
        return default


def parse_codes(value, name: str) -> tuple[str, ...]:
    """A list of codes or prefixes ("GT1", "GT101"), from a list or a comma-separated string."""
    if value is None:
        return ()
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise SettingsError(name, f"expected a list of rule codes, got {type(value).__name__}")
    codes = []
    for item in items:
        if not isinstance(item, str):
            raise SettingsError(name, f"expected rule codes such as 'GT101', got {item!r}")
        item = item.strip().upper()
        if item == "ALL":
            item = "GT"
        if not CODE_PREFIX.match(item):
            raise SettingsError(name, f"{item!r} is not a rule code or prefix (like 'GT101' or 'GT1')")
        codes.append(item)
    return tuple(codes)


def lint_settings_from_mapping(data: dict, base: LintSettings | None = None, prefix: str = "") -> LintSettings:
    """Build LintSettings from a `[tool.gradtrace]`-shaped mapping; raise SettingsError on bad values."""
    result = base or LintSettings()
    if not isinstance(data, dict):
        raise SettingsError(prefix or "settings", "expected a table")
    if "select" in data:
        result = replace(result, select=parse_codes(data["select"], prefix + "select"))
    if "ignore" in data:
        result = replace(result, ignore=parse_codes(data["ignore"], prefix + "ignore"))
    if "extend-ignore" in data or "extend_ignore" in data:
        extra = parse_codes(data.get("extend-ignore", data.get("extend_ignore")), prefix + "extend-ignore")
        result = replace(result, ignore=result.ignore + extra)
    pfi = data.get("per-file-ignores", data.get("per_file_ignores"))
    if pfi is not None:
        if not isinstance(pfi, dict):
            raise SettingsError(prefix + "per-file-ignores", "expected a table of glob = [codes]")
        result = replace(
            result,
            per_file_ignores=tuple((str(k), parse_codes(v, prefix + f"per-file-ignores.{k}")) for k, v in pfi.items()),
        )
    sev = data.get("severity")
    if sev is not None:
        if not isinstance(sev, dict):
            raise SettingsError(prefix + "severity", "expected a table of code = severity")
        pairs = []
        for code, level in sev.items():
            if level not in SEVERITY_NAMES:
                raise SettingsError(prefix + f"severity.{code}", f"expected one of {', '.join(SEVERITY_NAMES)}")
            pairs.append((str(code).upper(), level))
        result = replace(result, severity=tuple(pairs))
    if "exclude" in data:
        exclude = data["exclude"]
        if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
            raise SettingsError(prefix + "exclude", "expected a list of glob patterns")
        result = replace(result, exclude=tuple(exclude))
    return result


def find_pyproject(start: str) -> str | None:
    """The nearest pyproject.toml at or above `start` (a file or directory)."""
    directory = os.path.abspath(start if os.path.isdir(start) else os.path.dirname(start) or ".")
    while True:
        candidate = os.path.join(directory, "pyproject.toml")
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def load_pyproject_settings(start: str, base: LintSettings | None = None) -> tuple[LintSettings, str | None]:
    """`[tool.gradtrace]` from the nearest pyproject.toml; returns (settings, warning or None)."""
    path = find_pyproject(start)
    if not path or tomllib is None:
        return base or LintSettings(), None
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, ValueError) as exc:
        return base or LintSettings(), f"{path}: cannot read: {exc}"
    table = data.get("tool", {}).get("gradtrace")
    if table is None:
        return base or LintSettings(), None
    try:
        return lint_settings_from_mapping(table, base, prefix="tool.gradtrace."), None
    except SettingsError as exc:
        return base or LintSettings(), f"{path}: {exc}"


def field_names(cls) -> list[str]:
    return [f.name for f in fields(cls)]


__all__ = [
    "LintSettings",
    "SettingsError",
    "field",
    "field_names",
    "lint_settings_from_mapping",
    "load_pyproject_settings",
    "parse_codes",
]
