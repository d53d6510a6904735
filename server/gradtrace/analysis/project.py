"""Cross-file facts: find the module an import names, parse it once per version, cache it.

The usual split is `model.py` + `train.py`: the training loop imports the model class. Imports are
resolved first against the importing file's directory and the project root (the common layouts,
no I/O beyond `os.path`), then with jedi for package layouts it understands better; every parsed
file is cached by path and content version (mtime and size, or the editor's text).
"""

from __future__ import annotations

import os
import threading

from gradtrace.analysis.source import SourceFile

ROOT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")


def find_project_root(path: str) -> str:
    directory = os.path.abspath(path if os.path.isdir(path) else os.path.dirname(path) or ".")
    start = directory
    while True:
        if any(os.path.exists(os.path.join(directory, m)) for m in ROOT_MARKERS):
            return directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return start
        directory = parent


class Project:
    """Parsed files of one project, shared by every document checked in it."""

    def __init__(self, root: str | None = None):
        self.root = os.path.abspath(root) if root else None
        self.overlay: dict[str, str] = {}  # path -> unsaved editor text
        self._cache: dict[str, tuple[object, SourceFile]] = {}
        self._lock = threading.Lock()
        self.use_jedi = True
        self._contexts: dict[str, tuple[int, object]] = {}  # path -> (id of its SourceFile, ModuleContext)
        self._resolved: dict[tuple, str | None] = {}
        self._jedi_project = None
        self._project_names: set[str] | None | bool = False  # not listed yet

    def set_overlay(self, path: str, text: str | None) -> None:
        path = os.path.abspath(path)
        with self._lock:
            if text is None:
                self.overlay.pop(path, None)
            else:
                self.overlay[path] = text

    def source(self, path: str, lazy: bool = False) -> SourceFile | None:
        """The parsed file at `path` (editor text first), or None when it cannot be read. `lazy`: the file is
        read for what it defines (it is imported), so function bodies may be parsed as they are read; without
        it, the whole tree (a lazy parse of the same version is completed, so its nodes stay the same)."""
        path = os.path.abspath(path)
        text = self.overlay.get(path)
        try:
            version: object = ("overlay", hash(text)) if text is not None else self._stat(path)
        except OSError:
            return None
        with self._lock:
            cached = self._cache.get(path)
        if cached and cached[0] == version:
            return cached[1] if lazy else cached[1].complete()
        if text is None:
            from gradtrace.engine import read_source

            text, problem = read_source(path)
            if text is None:
                return None
        parsed = SourceFile.parse(path, text, lazy=lazy)
        with self._lock:
            self._cache[path] = (version, parsed)
        return parsed

    @staticmethod
    def _stat(path: str) -> tuple:
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size)

    def module_context(self, source: SourceFile):
        cached = self._contexts.get(source.path)
        return cached[1] if cached and cached[0] == id(source) else None

    def remember_module_context(self, source: SourceFile, context) -> None:
        self._contexts[source.path] = (id(source), context)

    def resolve_module(self, importer: str, module: str | None, level: int = 0) -> str | None:
        """The file a `from <module> import ...` in `importer` refers to, inside this project."""
        key = (os.path.dirname(os.path.abspath(importer)), module, level)
        if key not in self._resolved:
            self._resolved[key] = self._resolve(importer, module, level)
        return self._resolved[key]

    def _resolve(self, importer: str, module: str | None, level: int) -> str | None:
        base_dir = os.path.dirname(os.path.abspath(importer))
        parts = module.split(".") if module else []
        candidates: list[str] = []
        if level:
            directory = base_dir
            for _ in range(level - 1):
                directory = os.path.dirname(directory)
            candidates.append(directory)
        else:
            candidates.append(base_dir)
            if self.root:
                candidates.append(self.root)
                candidates.append(os.path.join(self.root, "src"))
        for directory in candidates:
            target = os.path.join(directory, *parts)
            for path in (target + ".py", os.path.join(target, "__init__.py")):
                if parts and os.path.isfile(path) or path in self.overlay:
                    return path
        if self.use_jedi and module and not level:
            return self._resolve_with_jedi(importer, module)
        return None

    def project_names(self) -> set[str] | None:
        """Names of the project's packages and modules (directories and `.py` stems, a few levels deep),
        found once; None when the tree is too large to list quickly (then jedi decides)."""
        if self._project_names is False:
            with self._lock:
                self._project_names = _list_names(self.root) if self.root else set()
        return self._project_names

    def _resolve_with_jedi(self, importer: str, module: str) -> str | None:
        """Package layouts the simple search misses; only paths inside the project count."""
        top = module.split(".")[0]
        if not self.root or top in {"torch", "tensorflow", "jax", "numpy", "keras", "flax", "optax"}:
            return None
        names = self.project_names()
        if names is not None and top not in names:
            return None  # nothing of that name in the project: jedi (~0.2-0.5 s a query) could only look elsewhere
        try:
            import jedi

            if self._jedi_project is None:
                self._jedi_project = jedi.Project(self.root, smart_sys_path=True, load_unsafe_extensions=False)
            script = jedi.Script(code=f"import {module}\n", path=importer, project=self._jedi_project)
            for name in script.goto(1, len("import ") + len(module), follow_imports=True):
                path = str(name.module_path) if name.module_path else None
                if path and os.path.abspath(path).startswith(self.root + os.sep):
                    return path
        except Exception:
            return None
        return None


SKIPPED_DIRS = {"node_modules", "site-packages", "__pycache__", "build", "dist", "venv", "env"}


def _list_names(root: str, depth: int = 4, limit: int = 20000) -> set[str] | None:
    names: set[str] = set()
    level = [root]
    seen = 0
    for _ in range(depth):
        below = []
        for directory in level:
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            seen += len(entries)
            if seen > limit:
                return None
            for entry in entries:
                if entry.name.startswith(".") or entry.name in SKIPPED_DIRS:
                    continue
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir:
                    names.add(entry.name)
                    below.append(entry.path)
                elif entry.name.endswith(".py"):
                    names.add(entry.name[:-3])
        level = below
    return names
