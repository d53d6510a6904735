"""Settings: one typed place for what the CLI, `[tool.gradtrace]` and the editor can set."""

from __future__ import annotations

import fnmatch
import os
import re

from gradtrace.records import field, fields, record, replace

CODE_PREFIX = re.compile(r"^GT\d{0,3}$")
SEVERITY_NAMES = ("error", "warning", "information", "hint")


class SettingsError(ValueError):
    """A setting has a bad value; `name` says which one."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


@record(frozen=True)
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


def _may_hold_our_table(raw: bytes) -> bool:
    """Could this pyproject.toml define `tool.gradtrace`? TOML spells it as a table header (`[tool.gradtrace]`,
    `[ tool . "gradtrace" ]`), a dotted key (`tool.gradtrace.select = ...`) or an inline table (`tool = {gradtrace =
    ...}`), each on one line naming `tool` before `gradtrace`, or as a key under a `[tool]` table. A project that
    names gradtrace only as its name, a dependency or a script has none of them."""
    if b"gradtrace" not in raw:
        return False
    return re.search(rb"tool[^\n]*gradtrace", raw) is not None \
        or re.search(rb"^[ \t]*\[[ \t]*[\"']?tool[\"']?[ \t]*\]", raw, re.M) is not None


def load_pyproject_settings(start: str, base: LintSettings | None = None) -> tuple[LintSettings, str | None]:
    """`[tool.gradtrace]` from the nearest pyproject.toml; returns (settings, warning or None)."""
    path = find_pyproject(start)
    if not path:
        return base or LintSettings(), None
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        return base or LintSettings(), f"{path}: cannot read: {exc}"
    if not _may_hold_our_table(raw):  # not ours to parse (importing and running a TOML parser costs start-up)
        return base or LintSettings(), None
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        return base or LintSettings(), None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return base or LintSettings(), f"{path}: cannot read: {exc}"
    table = data.get("tool", {}).get("gradtrace")
    if table is None:
        return base or LintSettings(), None
    try:
        return lint_settings_from_mapping(table, base, prefix="tool.gradtrace."), None
    except SettingsError as exc:
        return base or LintSettings(), f"{path}: {exc}"


# ---- Editor / language-server settings ----------------------------------------------------------

LOG_LEVELS = ("error", "warning", "info", "debug")
RUN_MODES = ("onType", "onSave")


@record(frozen=True)
class ServerSettings:
    """What an editor can set (the `gradtrace.*` namespace); every field has a default.

    `lint` holds the editor's own lint settings on top of the defaults; `lint_overrides` keeps the
    `[tool.gradtrace]`-shaped keys the editor set, so they can be laid over a project's
    pyproject.toml key by key (editor settings win).
    """

    lint_enable: bool = True
    lint_run: str = "onType"  # onType | onSave
    lint_debounce_ms: int = 40
    lint: LintSettings = field(default_factory=LintSettings)
    lint_overrides: tuple[tuple[str, object], ...] = ()
    fix_all: bool = True
    code_action_fix_violation: bool = True
    code_action_disable_rule_comment: bool = True
    show_syntax_errors: bool = True  # False when the editor shows its own (GT000 is then not published)
    lens_enable: bool = True  # a code lens above each loss: what it reaches
    inlay_hints_enable: bool = False  # `∅∇` after an assignment whose value lost its gradient on the way to a loss
    probe_enable: bool = True
    probe_timeout: float = 60.0
    probe_memory_mb: int = 4096
    probe_device: str = "cpu"
    probe_interpreter: tuple[str, ...] = ()  # empty: the server's own interpreter
    log_level: str = "info"

    def lint_for(self, project_settings: LintSettings) -> LintSettings:
        """The lint settings for one file: its project's `[tool.gradtrace]`, then the editor's keys."""
        if not self.lint_overrides:
            return project_settings
        try:
            return lint_settings_from_mapping(dict(self.lint_overrides), base=project_settings)
        except SettingsError:  # validated when parsed; keep the project's settings if not
            return project_settings


# editor key (camelCase, dotted) -> [tool.gradtrace] key
_LINT_KEYS = {
    "lint.select": "select",
    "lint.ignore": "ignore",
    "lint.extendIgnore": "extend-ignore",
    "lint.perFileIgnores": "per-file-ignores",
    "lint.severity": "severity",
    "lint.exclude": "exclude",
}


def _flatten(data: dict, prefix: str = "") -> dict:
    """{"lint": {"select": [...]}} and {"lint.select": [...]} both become {"lint.select": [...]}."""
    flat: dict = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        # tables whose keys are data (globs, codes), not setting names, stay whole
        if isinstance(value, dict) and name not in ("lint.perFileIgnores", "lint.severity"):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _bool(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise SettingsError(name, f"expected true or false, got {value!r}")


def _number(value, name: str, low: float, high: float, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingsError(name, f"expected a number, got {value!r}")
    if integer and value != int(value):
        raise SettingsError(name, f"expected a whole number, got {value!r}")
    if not low <= value <= high:
        raise SettingsError(name, f"expected a number from {low:g} to {high:g}, got {value!r}")
    return int(value) if integer else float(value)


def _choice(value, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SettingsError(name, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def _device(value, name: str) -> str:
    if isinstance(value, str) and re.fullmatch(r"cpu|mps|cuda(:\d+)?", value):
        return value
    raise SettingsError(name, f"expected 'cpu', 'cuda', 'cuda:N' or 'mps', got {value!r}")


def _interpreter(value, name: str) -> tuple[str, ...]:
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise SettingsError(name, f"expected a path to a Python interpreter (or [path, args...]), got {value!r}")


_SERVER_KEYS = {
    # editor key -> (field, parser)
    "lint.enable": ("lint_enable", _bool),
    "lint.run": ("lint_run", lambda v, n: _choice(v, n, RUN_MODES)),
    "lint.debounce": ("lint_debounce_ms", lambda v, n: _number(v, n, 0, 5000, integer=True)),
    "fixAll": ("fix_all", _bool),
    "codeAction.fixViolation.enable": ("code_action_fix_violation", _bool),
    "codeAction.disableRuleComment.enable": ("code_action_disable_rule_comment", _bool),
    "showSyntaxErrors": ("show_syntax_errors", _bool),
    "lens.enable": ("lens_enable", _bool),
    "inlayHints.enable": ("inlay_hints_enable", _bool),
    "probe.enable": ("probe_enable", _bool),
    "probe.timeout": ("probe_timeout", lambda v, n: _number(v, n, 1, 3600)),
    "probe.memory": ("probe_memory_mb", lambda v, n: _number(v, n, 64, 1024 * 1024, integer=True)),
    "probe.device": ("probe_device", _device),
    "probe.interpreter": ("probe_interpreter", _interpreter),
    "interpreter": ("probe_interpreter", _interpreter),
    "logLevel": ("log_level", lambda v, n: _choice(v, n, LOG_LEVELS)),
}
# Keys the editor extension sends for its own use; accepted and ignored here.
_CLIENT_ONLY_KEYS = ("importStrategy", "trace.server", "path", "showNotifications", "cwd", "workspace", "enable")


def server_settings_from_mapping(
    data: dict | None, namespace: str = "gradtrace"
) -> tuple[ServerSettings, list[SettingsError]]:
    """Editor settings -> ServerSettings; each bad or unknown value is reported and left at its default.

    Accepts nested (`{"probe": {"timeout": 30}}`) and dotted (`{"probe.timeout": 30}`) keys; setting
    names in errors are the user's, e.g. `gradtrace.probe.timeout`.
    """
    problems: list[SettingsError] = []
    if data is None:
        return ServerSettings(), problems
    if not isinstance(data, dict):
        return ServerSettings(), [SettingsError(namespace, f"expected an object, got {type(data).__name__}")]
    flat = _flatten(data)
    values: dict = {}
    overrides: dict = {}
    # `interpreter` (the editor's Python) applies to the probe unless probe.interpreter says otherwise
    order = sorted(flat, key=lambda k: k == "probe.interpreter")
    for key in order:
        value = flat[key]
        user_name = f"{namespace}.{key}"
        if key in _SERVER_KEYS:
            fname, parse = _SERVER_KEYS[key]
            try:
                values[fname] = parse(value, user_name)
            except SettingsError as exc:
                problems.append(exc)
        elif key in _LINT_KEYS:
            toml_key = _LINT_KEYS[key]
            try:
                lint_settings_from_mapping({toml_key: value}, prefix=namespace + ".lint.")
            except SettingsError as exc:  # name it as the editor spells it: gradtrace.lint.perFileIgnores.x
                name = user_name + exc.name[len(f"{namespace}.lint.{toml_key}"):]
                problems.append(SettingsError(name, str(exc).split(": ", 1)[-1]))
            else:
                overrides[toml_key] = value
        elif key in _CLIENT_ONLY_KEYS or key.split(".")[0] in _CLIENT_ONLY_KEYS:
            continue
        else:
            problems.append(SettingsError(user_name, "unknown setting, ignored"))
    lint = lint_settings_from_mapping(overrides) if overrides else LintSettings()
    settings = ServerSettings(**values, lint=lint,
                              lint_overrides=tuple(overrides.items()))
    return settings, problems


def field_names(cls) -> list[str]:
    return [f.name for f in fields(cls)]


__all__ = [
    "LintSettings",
    "ServerSettings",
    "SettingsError",
    "field",
    "field_names",
    "lint_settings_from_mapping",
    "load_pyproject_settings",
    "parse_codes",
    "server_settings_from_mapping",
]
