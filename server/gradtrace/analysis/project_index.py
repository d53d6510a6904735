"""The project index: a project's modules, what each one imports, and what imports each one.

One index serves `gradtrace check` (it orders the files so that a module is checked before the files that
import it, and files that import each other go to the same worker) and the language server (an edit
re-analyses the open documents that import the edited one, directly or through other modules).

    index = ProjectIndex("/repo")
    index.update("/repo/pkg/model.py", text)      # True when its imports changed (per document version)
    index.module_name("/repo/pkg/model.py")        # "pkg.model"
    index.path_of("pkg.model")                     # "/repo/pkg/model.py"
    index.imports_of("train")                      # {"pkg.model", ...}: project modules it imports
    index.importers_of("pkg.model")                # modules that import it; transitive=True for all upstream
    index.follow("/repo/train.py")                 # index, from disk, the project modules it reaches

Imports are read from the `import` statements only: each one is found in the text and parsed with `ast`,
so indexing a file costs a scan of its text, not a parse of all of it (and works on text that does not
parse). An import is resolved the way `Project` resolves it: relative to the importing file's directory,
the project root and `src/` (or the package, for relative imports); only files inside the project count.
Module names are relative to the root (or `src/`); a file whose path is not a dotted name keeps its path.
"""

from __future__ import annotations

import ast
import os
import re
import threading

from gradtrace import parsing
from gradtrace.guarded_files import UnreadableFile, read_text

IMPORT_LINE = re.compile(r"^[ \t]*(?:from[ \t]+[.\w]+[ \t]+import\b|import[ \t]+[\w.])", re.M)
MAX_IMPORT_STATEMENT = 4000  # characters: a parenthesised import list longer than this is not an import
MAX_FOLLOWED = 2000  # files indexed from disk by one `follow`
MAX_FILE_BYTES = 4 * 1024 * 1024


def import_statements(text: str) -> list[ast.Import | ast.ImportFrom]:
    """The `import` / `from ... import` statements of a text, parsed one by one (unparsable ones skipped)."""
    found = []
    if "import" not in text:
        return found
    for match in IMPORT_LINE.finditer(text):
        start = match.start()
        end = _statement_end(text, match.end())
        try:
            tree = parsing.parse(text[start:end].strip())
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        found.extend(node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)))
    return found


def _statement_end(text: str, position: int) -> int:
    """The end of the import statement that continues at `position` (parentheses and backslashes)."""
    depth = 0
    limit = min(len(text), position + MAX_IMPORT_STATEMENT)
    i = position
    while i < limit:
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "#":
            newline = text.find("\n", i)
            i = limit if newline < 0 else newline
            continue
        elif ch == "\\" and text.startswith("\n", i + 1):
            i += 2
            continue
        elif ch in "\n;" and depth <= 0:
            return i
        i += 1
    return i


class ProjectIndex:
    """Modules of one project and the import edges between them (file paths inside, module names outside)."""

    def __init__(self, root: str | None):
        self.root = os.path.abspath(root) if root else None
        self._imports: dict[str, frozenset[str]] = {}  # path -> paths it imports
        self._importers: dict[str, set[str]] = {}  # path -> paths that import it
        self._stamps: dict[str, object] = {}  # path -> what its imports were read from (text hash or stat)
        self._exists: dict[str, bool] = {}
        self._lock = threading.RLock()

    # ---- names ---------------------------------------------------------------------------------

    def module_name(self, path: str) -> str | None:
        """`pkg.model` for `<root>/pkg/model.py` (or `<root>/src/pkg/model.py`); None outside the project."""
        path = os.path.abspath(path)
        if self.root is None or not path.startswith(self.root + os.sep):
            return None
        relative = os.path.relpath(path, self.root)
        if relative.startswith("src" + os.sep):
            relative = relative[4:]
        stem, ext = os.path.splitext(relative)
        if ext not in (".py", ".pyi"):
            return None
        parts = stem.split(os.sep)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not parts or not all(part.isidentifier() for part in parts):
            return relative
        return ".".join(parts)

    def path_of(self, module: str) -> str | None:
        """The indexed file of a module name (or of a path, returned as it is when indexed)."""
        with self._lock:
            if module in self._imports:
                return module
            for path in self._imports:
                if self.module_name(path) == module:
                    return path
        return None

    # ---- updates -------------------------------------------------------------------------------

    def update(self, path: str, text: str) -> bool:
        """Index `path` with this text (one document version); True when the project modules it imports changed."""
        path = os.path.abspath(path)
        stamp = ("text", hash(text))
        with self._lock:
            if self._stamps.get(path) == stamp:
                return False
            self._exists.clear()  # files may have come or gone since the last version
        targets = frozenset(self._resolve_all(path, import_statements(text)))
        with self._lock:
            self._stamps[path] = stamp
            return self._set_imports(path, targets)

    def forget(self, path: str) -> None:
        path = os.path.abspath(path)
        with self._lock:
            self._stamps.pop(path, None)
            self._set_imports(path, frozenset())
            self._imports.pop(path, None)

    def index_file(self, path: str) -> bool:
        """Index a file from disk (through the guarded reader); False when it cannot be read."""
        path = os.path.abspath(path)
        try:
            stat = os.stat(path)
            stamp = ("disk", stat.st_mtime_ns, stat.st_size)
        except OSError:
            return False
        with self._lock:
            if self._stamps.get(path) == stamp:
                return True
        try:
            text = read_text(path, MAX_FILE_BYTES, errors="replace")
        except UnreadableFile:
            return False
        targets = frozenset(self._resolve_all(path, import_statements(text)))
        with self._lock:
            self._stamps[path] = stamp
            self._set_imports(path, targets)
        return True

    def follow(self, path: str, limit: int = MAX_FOLLOWED) -> None:
        """Index from disk the project files `path` imports, and theirs, that are not indexed yet."""
        todo = list(self._imports.get(os.path.abspath(path), ()))
        seen = 0
        while todo and seen < limit:
            target = todo.pop()
            with self._lock:
                known = target in self._stamps
            if known:
                continue
            seen += 1
            if self.index_file(target):
                todo.extend(self._imports.get(target, ()))

    def _set_imports(self, path: str, targets: frozenset[str]) -> bool:
        previous = self._imports.get(path, frozenset())
        self._imports[path] = targets
        for gone in previous - targets:
            self._importers.get(gone, set()).discard(path)
        for new in targets - previous:
            self._importers.setdefault(new, set()).add(path)
        return previous != targets

    # ---- queries -------------------------------------------------------------------------------

    def imports_of(self, module: str) -> frozenset[str]:
        """The project modules `module` (a name or a path) imports."""
        path = self._path(module)
        with self._lock:
            return frozenset(self._name(p) for p in self._imports.get(path, ()))

    def imported_paths(self, path: str, transitive: bool = False) -> set[str]:
        """Paths of the indexed project files that the file at `path` imports (directly, or through others)."""
        return self._walk(self._imports, os.path.abspath(path), transitive)

    def importers_of(self, module: str, transitive: bool = False) -> frozenset[str]:
        """The indexed modules that import `module` (a name or a path); with `transitive`, also theirs."""
        return frozenset(self._name(p) for p in self.importer_paths(self._path(module), transitive))

    def importer_paths(self, path: str, transitive: bool = False) -> set[str]:
        """Paths of the indexed files that import the file at `path` (directly, or through others)."""
        return self._walk(self._importers, os.path.abspath(path), transitive)

    def _walk(self, edges: dict, path: str, transitive: bool) -> set[str]:
        with self._lock:
            found: set[str] = set()
            todo = [path]
            while todo:
                for other in edges.get(todo.pop(), ()):
                    if other not in found and other != path:
                        found.add(other)
                        if transitive:
                            todo.append(other)
            return found

    def dependency_order(self, paths: list[str]) -> list[str]:
        """`paths` with every file after the files it imports (cycles broken in the given order), grouping
        files that import each other next to one another."""
        wanted = {os.path.abspath(p): p for p in paths}
        ordered: list[str] = []
        state: dict[str, int] = {}  # 1: being visited, 2: done
        with self._lock:
            for start in wanted:
                stack = [(start, iter(sorted(self._imports.get(start, ()))))]
                state[start] = state.get(start) or 1
                if state[start] == 2:
                    continue
                while stack:
                    node, children = stack[-1]
                    child = next(children, None)
                    if child is None:
                        stack.pop()
                        state[node] = 2
                        if node in wanted:
                            ordered.append(wanted[node])
                    elif child in wanted and not state.get(child):
                        state[child] = 1
                        stack.append((child, iter(sorted(self._imports.get(child, ())))))
        return ordered

    def _path(self, module: str) -> str:
        if os.path.isabs(module):
            return os.path.abspath(module)
        return self.path_of(module) or module

    def _name(self, path: str) -> str:
        return self.module_name(path) or path

    # ---- resolution ----------------------------------------------------------------------------

    def _resolve_all(self, importer: str, statements: list[ast.Import | ast.ImportFrom]) -> set[str]:
        targets: set[str] = set()
        for node in statements:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found = self._resolve(importer, alias.name, 0)
                    if found:
                        targets.add(found)
            else:
                base = self._resolve(importer, node.module, node.level)
                if base:
                    targets.add(base)
                for alias in node.names:  # `from pkg import model` may name a submodule
                    if alias.name != "*":
                        dotted = f"{node.module}.{alias.name}" if node.module else alias.name
                        found = self._resolve(importer, dotted, node.level)
                        if found:
                            targets.add(found)
        targets.discard(importer)
        return targets

    def _resolve(self, importer: str, module: str | None, level: int) -> str | None:
        parts = module.split(".") if module else []
        base_dir = os.path.dirname(importer)
        if level:
            directory = base_dir
            for _ in range(level - 1):
                directory = os.path.dirname(directory)
            candidates = [directory]
        else:
            candidates = [base_dir] + ([self.root, os.path.join(self.root, "src")] if self.root else [])
        for directory in candidates:
            target = os.path.join(directory, *parts)
            for path in (target + ".py", os.path.join(target, "__init__.py")):
                if (parts or level) and self._inside(path) and self._is_file(path):
                    return path
        return None

    def _inside(self, path: str) -> bool:
        return self.root is None or path.startswith(self.root + os.sep)

    def _is_file(self, path: str) -> bool:
        with self._lock:
            if path in self._stamps and self._stamps[path][0] == "text":
                return True  # an open document, saved or not
            known = self._exists.get(path)
        if known is None:
            known = os.path.isfile(path)
            with self._lock:
                self._exists[path] = known
        return known
