"""A document parsed once per version: text, `ast` tree, line index, suppressions."""

from __future__ import annotations

import ast
import sys
from functools import cached_property

from gradtrace import parsing
from gradtrace.analysis.skeleton import load_all, parse_skeleton
from gradtrace.analysis.suppressions import is_suppressed, line_suppressions
from gradtrace.positions import LineIndex
from gradtrace.records import field, record

# the fields that hold statements, in the order of every node type's `_fields` (Try: body, handlers, orelse,
# finalbody; match: cases)
_STATEMENT_FIELDS = ("body", "handlers", "orelse", "finalbody", "cases")

# Fields that never hold a node a walk visits: names and numbers (`Name.id`, `ImportFrom.level`, ...), and the
# expression contexts and operators, singletons shared by the whole tree (`Load()`, `Add()`) that nobody asks for.
_NOT_CHILDREN = frozenset({"ctx", "op", "ops", "id", "attr", "arg", "name", "asname", "module", "level", "kind",
                           "conversion", "simple", "is_async", "type_comment", "rest", "tag", "lineno"})
_SCALAR_VALUE = (ast.Constant, ast.MatchSingleton)  # their `value` is a Python value, not a node
_NODE_FIELDS: dict[type, tuple[str, ...]] = {}


def node_fields(kind: type) -> tuple[str, ...]:
    """The fields of a node type that may hold child nodes, in `_fields` order (the one table every walk uses)."""
    fields = _NODE_FIELDS.get(kind)
    if fields is None:
        fields = () if kind in _SCALAR_VALUE else tuple(f for f in kind._fields if f not in _NOT_CHILDREN)
        _NODE_FIELDS[kind] = fields
    return fields


# node types with a context (`ctx`) or an operator (`op`): each holds one more node than the walks visit
_WITH_SINGLETON = (ast.Name, ast.Attribute, ast.Subscript, ast.Starred, ast.List, ast.Tuple, ast.BinOp, ast.UnaryOp,
                   ast.BoolOp, ast.AugAssign)

FRAMEWORK_MARKERS = {
    "torch": ("torch",),
    "tensorflow": ("tensorflow", "keras"),
    "jax": ("jax", "flax", "optax"),
}
IMPORTED_AS = {  # top-level packages whose import brings a framework's analysis in
    "tensorflow": {"tensorflow", "keras", "tf_keras"},
    "jax": {"jax", "jaxlib", "flax", "optax", "equinox", "haiku", "chex"},
}
# What a function that imports a framework locally must use for the framework's analysis to run on the file:
# a weight-conversion helper (`import tensorflow as tf` to read a checkpoint, `import jax.numpy as jnp` for a
# dtype) differentiates nothing.
LOCAL_IMPORT_NEEDS = {
    "tensorflow": frozenset({"GradientTape", "gradient", "apply_gradients", "minimize", "fit", "train_on_batch",
                             "Variable", "trainable_variables", "trainable_weights", "stop_gradient",
                             "custom_gradient", "function", "compile"}),
    "jax": frozenset({"grad", "value_and_grad", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "linearize",
                      "custom_vjp", "custom_jvp", "stop_gradient", "checkpoint", "remat", "jit", "vmap", "pmap",
                      "scan", "while_loop", "fori_loop", "apply_updates", "optax", "at"}),
}
UNNAMED = ""  # the file name given to the parser: one that cannot be opened
MAX_NESTING_HINT = 400  # deeper expressions are analysed only partially (see GT002)


@record
class Span:
    """1-based lines, 1-based code-point columns (end exclusive)."""

    line: int
    column: int
    end_line: int
    end_column: int


@record
class SourceFile:
    path: str
    text: str
    tree: ast.Module | None = None
    syntax_error: SyntaxError | None = None
    lines: LineIndex = field(init=False)
    # the statements set aside to parse the rest (1-based inclusive line ranges); empty when the text parsed
    set_aside: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self):
        self.lines = LineIndex(self.text)

    @classmethod
    def parse(cls, path: str, text: str, lazy: bool = False) -> SourceFile:
        """`lazy`: for a file read only for what it defines (an import of the checked file), function bodies are
        parsed when first read (`analysis/skeleton.py`); `complete()` parses the rest."""
        src = cls(path, text)
        limit = sys.getrecursionlimit()
        try:
            sys.setrecursionlimit(max(limit, 20000))
            skeleton = parse_skeleton(text) if lazy else None
            if skeleton is not None:
                src.tree, src._lazy = skeleton
                return src
            # No file name: given one that exists, CPython counts the error's column on the line of that
            # file on disk, which is not this text while the editor holds unsaved changes.
            src.tree = parsing.parse(text, filename=UNNAMED, type_comments=False)
        except SyntaxError as exc:
            src.syntax_error = exc
            src._recoverable = True
        except (RecursionError, MemoryError) as exc:
            src.syntax_error = SyntaxError(f"too deeply nested to parse ({type(exc).__name__})")
            src.syntax_error.lineno = 1
            src.syntax_error.offset = 1
        except ValueError as exc:  # e.g. null bytes
            src.syntax_error = SyntaxError(str(exc))
            src.syntax_error.lineno = 1
            src.syntax_error.offset = 1
        finally:
            sys.setrecursionlimit(limit)
        return src

    @property
    def lazy(self) -> bool:
        """Are some function bodies not parsed yet?"""
        return bool(self.__dict__.get("_lazy"))

    def complete(self) -> SourceFile:
        """Parse every function body not parsed yet: the tree is then the one a whole parse gives."""
        load_all(self.__dict__.pop("_lazy", None) or ())
        return self

    def named(self, path: str) -> SourceFile:
        """The same parse (tree, node index, every cached fact) under another name."""
        twin = object.__new__(SourceFile)
        twin.__dict__.update(self.__dict__)
        twin.path = path
        return twin

    def recovered(self) -> SourceFile | None:
        """For a text that does not parse: the same text with the statements that hold its syntax errors set
        aside (same lines and positions), parsed; None when there is nothing to recover or it fails."""
        if self.syntax_error is None or not getattr(self, "_recoverable", False):
            return None
        from gradtrace.analysis.recovery import recover

        limit = sys.getrecursionlimit()
        try:
            sys.setrecursionlimit(max(limit, 20000))
            recovery = recover(self.lines.lines, self.syntax_error)
        except (RecursionError, MemoryError):
            return None
        finally:
            sys.setrecursionlimit(limit)
        if recovery is None:
            return None
        return SourceFile(self.path, recovery.text, recovery.tree, set_aside=recovery.set_aside)

    @cached_property
    def index(self) -> dict[type, list[ast.AST]]:
        """Every node of the tree grouped by type, from one walk (rules look nodes up here instead of
        walking the tree again)."""
        by_type: dict[type, list[ast.AST]] = {}
        if self.tree is None:
            return by_type
        self.complete()
        stack: list[ast.AST] = [self.tree]
        pop, push, extend = stack.pop, stack.append, stack.extend
        AST = ast.AST
        table = _NODE_FIELDS
        while stack:
            node = pop()
            kind = type(node)
            bucket = by_type.get(kind)
            if bucket is None:
                by_type[kind] = [node]
            else:
                bucket.append(node)
            fields = table.get(kind)
            for name in fields if fields is not None else node_fields(kind):
                value = getattr(node, name, None)
                if value.__class__ is list:
                    extend([v for v in value if isinstance(v, AST)])
                elif isinstance(value, AST):
                    push(value)
        for bucket in by_type.values():
            bucket.reverse()
        return by_type

    @cached_property
    def parents(self) -> dict[int, ast.AST]:
        """id(node) -> parent node, built on first use (the semantic model's walk fills it when it runs first)."""
        if "semantic" in self.__dict__:
            return self.semantic.parents
        return parent_map(self.complete().tree) if self.tree is not None else {}

    @cached_property
    def semantic(self):
        """Scopes, bindings, def-use and enclosing definitions of the file (`analysis/semantic.py`), built on
        first use; the tree must have parsed."""
        from gradtrace.analysis.semantic import SemanticModel

        return SemanticModel(self.complete(), self.__dict__.get("parents"))

    @cached_property
    def imports(self) -> list:
        """The file's `import` and `from ... import` statements, in the order `nodes(ast.Import,
        ast.ImportFrom)` gives them, with or without the node index (a module read only for its definitions
        has none)."""
        if "index" in self.__dict__ or self.tree is None:
            return self.nodes(ast.Import, ast.ImportFrom)
        found: dict[type, list] = {ast.Import: [], ast.ImportFrom: []}
        for _, node in _imports_by_definition(self.tree):
            found[type(node)].append(node)
        for bucket in found.values():
            bucket.reverse()
        return found[ast.Import] + found[ast.ImportFrom]

    @cached_property
    def node_count(self) -> int:
        """How many nodes the tree has, contexts and operators included (each counts once per node holding it)."""
        index = self.index
        count = sum(len(bucket) for bucket in index.values())
        count += sum(len(index.get(kind, ())) for kind in _WITH_SINGLETON)
        return count + sum(len(compare.ops) for compare in index.get(ast.Compare, ()))

    def nodes(self, *kinds: type) -> list:
        """Nodes of the given types (per type in source order, a node after the nodes nested in it)."""
        if len(kinds) == 1:
            return self.index.get(kinds[0], [])
        result = []
        for kind in kinds:
            result.extend(self.index.get(kind, []))
        return result

    @cached_property
    def frameworks(self) -> frozenset[str]:
        """Frameworks whose analysis this file needs.

        A cheap text pre-filter first; TensorFlow and JAX must then also be imported (a PyTorch file that
        mentions "jax" in a docstring or a weight-init mode name gets no JAX analysis). PyTorch keeps the
        text test: a training script may use a model from a project module without importing torch.
        """
        mentioned = {name for name, markers in FRAMEWORK_MARKERS.items() if any(m in self.text for m in markers)}
        if self.tree is None or not mentioned - {"torch"}:
            return frozenset(mentioned)
        imported: set[str] = set()
        local: list[tuple[set, ast.AST]] = []  # (packages, the top-level definition that imports them)
        for definition, node in _imports_by_definition(self.tree):
            packages = {alias.name.partition(".")[0] for alias in node.names} if isinstance(node, ast.Import) \
                else {node.module.partition(".")[0]} if node.module and not node.level else set()
            if definition is None:
                imported |= packages
            elif packages:
                local.append((packages, definition))
        found = set()
        for name in mentioned - {"torch"}:
            if imported & IMPORTED_AS[name] or any(
                    packages & IMPORTED_AS[name] and _uses_any(definition, LOCAL_IMPORT_NEEDS[name])
                    for packages, definition in local):
                found.add(name)
        return frozenset(found | (mentioned & {"torch"}))

    @cached_property
    def noqa(self) -> dict[int, frozenset[str] | None]:
        """line -> suppressed codes (None: every code) for lines with a `# noqa` comment."""
        if "noqa" not in self.text and "NOQA" not in self.text:
            return {}
        return line_suppressions(self.lines.lines)

    def suppressed(self, code: str, line: int, end_line: int | None = None) -> bool:
        return bool(self.noqa) and is_suppressed(self.noqa, code, line, end_line or line)

    def span(self, node: ast.AST) -> Span:
        """The code-point span of an `ast` node."""
        line = getattr(node, "lineno", 1)
        end_line = getattr(node, "end_lineno", None) or line
        col = self.lines.char_col(line, getattr(node, "col_offset", 0))
        end_byte = getattr(node, "end_col_offset", None)
        end_col = self.lines.char_col(end_line, end_byte) if end_byte is not None else len(self.lines.line(end_line))
        return Span(line, col + 1, end_line, end_col + 1)

    def line_span(self, line: int) -> Span:
        """The span of a whole line's code, without its indentation."""
        text = self.lines.line(line)
        start = len(text) - len(text.lstrip())
        return Span(line, start + 1, line, len(text.rstrip()) + 1)

    def segment(self, node: ast.AST) -> str:
        """The source text of a node (single- or multi-line)."""
        s = self.span(node)
        if s.line == s.end_line:
            return self.lines.line(s.line)[s.column - 1 : s.end_column - 1]
        parts = [self.lines.line(s.line)[s.column - 1 :]]
        parts += [self.lines.line(n) for n in range(s.line + 1, s.end_line)]
        parts.append(self.lines.line(s.end_line)[: s.end_column - 1])
        return "\n".join(parts)


def parent_map(root: ast.AST) -> dict[int, ast.AST]:
    """id(node) -> parent node for every node below `root`."""
    parents: dict[int, ast.AST] = {}
    stack: list[ast.AST] = [root]
    AST = ast.AST
    while stack:
        node = stack.pop()
        for name in node_fields(type(node)):
            value = getattr(node, name, None)
            if value.__class__ is list:
                for child in value:
                    if isinstance(child, AST):
                        parents[id(child)] = node
                        stack.append(child)
            elif isinstance(value, AST):
                parents[id(value)] = node
                stack.append(value)
    return parents


def _imports_by_definition(tree: ast.Module):
    """(None or the top-level function or class it is in, import statement) for every import of the file, from a
    walk of the statements alone (an import is never inside an expression), in the node index's walk order. A
    function body not parsed yet is not parsed for this: its skeleton keeps its imports."""
    stack: list = [(None, tree)]
    while stack:
        definition, node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield definition, node
            continue
        if definition is None and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            definition = node
        fields = node.__dict__
        for name in _STATEMENT_FIELDS:
            children = fields.get(name)
            if children:
                stack.extend((definition, child) for child in children)


def _uses_any(definition: ast.AST, names: frozenset) -> bool:
    """Does the definition name (as a name or an attribute) any of `names`?"""
    for node in ast.walk(definition):
        if (isinstance(node, ast.Attribute) and node.attr in names) or (isinstance(node, ast.Name) and node.id in names):
            return True
    return False
