"""Resolve names through imports: `import torch as T`, `from torch import nn, no_grad`, `import torch.nn.functional as F`.

`NameTable.qualname(expr)` turns `F.relu`, `T.no_grad`, `nn.Linear` into fully qualified names
("torch.nn.functional.relu", "torch.no_grad", "torch.nn.Linear"). Names not bound by an import are
returned as written ("self.fc", "model"), prefixed with nothing, so callers can tell them apart by
checking `is_external`.
"""

from __future__ import annotations

import ast
from functools import lru_cache

from gradtrace.records import field, record

# Modules whose names resolve to themselves once imported.
KNOWN_ROOTS = ("torch", "tensorflow", "keras", "jax", "flax", "optax", "numpy", "math", "scipy", "haiku", "equinox")
# Common re-export spellings normalised to one canonical name.
CANONICAL = {
    "tensorflow.keras": "keras",
    "tf_keras": "keras",
    "jax.numpy": "jax.numpy",
}


@lru_cache(maxsize=4096)
def canonical(qualified: str) -> str:
    for prefix, replacement in CANONICAL.items():
        if qualified == prefix or qualified.startswith(prefix + "."):
            return replacement + qualified[len(prefix):]
    return qualified


@record
class NameTable:
    aliases: dict[str, str] = field(default_factory=dict)  # local name -> qualified name
    # `from pkg import Name` of names defined in project modules: local name -> (module, level, name)
    project_imports: dict[str, tuple[str | None, int, str]] = field(default_factory=dict)
    _chains: dict[int, tuple[ast.AST, str | None]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_module(cls, tree: ast.Module, imports: list[ast.AST] | None = None) -> NameTable:
        """`imports`: the file's Import/ImportFrom nodes when already indexed (else the tree is walked)."""
        table = cls()
        nodes = imports if imports is not None else [
            n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        for node in sorted(nodes, key=lambda n: (n.lineno, n.col_offset)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        table.aliases[alias.asname] = canonical(alias.name)
                    else:
                        root = alias.name.split(".")[0]
                        table.aliases.setdefault(root, canonical(root))
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                root = module.split(".")[0]
                for alias in node.names:
                    if alias.name == "*":
                        continue
                    local = alias.asname or alias.name
                    if node.level == 0 and root in KNOWN_ROOTS:
                        table.aliases[local] = canonical(f"{module}.{alias.name}")
                    else:
                        table.project_imports[local] = (node.module, node.level, alias.name)
        return table

    def qualname(self, node: ast.AST) -> str | None:
        """Dotted name of a Name/Attribute chain, resolved through imports; None for other shapes."""
        if isinstance(node, ast.Name):  # the common case, without building a list
            return canonical(self.aliases.get(node.id, node.id))
        hit = self._chains.get(id(node))
        if hit is not None and hit[0] is node:  # the same node asked again (loops, helpers called twice)
            return hit[1]
        result = self._qualname_chain(node)
        self._chains[id(node)] = (node, result)
        return result

    def _qualname_chain(self, node: ast.AST) -> str | None:
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        head = self.aliases.get(node.id, node.id)
        parts.append(head)
        return canonical(".".join(reversed(parts)))

    def is_external(self, qualified: str | None, *roots: str) -> bool:
        """True when `qualified` starts with one of the imported framework roots."""
        if not qualified:
            return False
        head = qualified.split(".")[0]
        return head in (roots or KNOWN_ROOTS) and head in {v.split(".")[0] for v in self.aliases.values()}


def dotted(node: ast.AST) -> str | None:
    """`self.encoder.fc` -> "self.encoder.fc" without import resolution (None for other shapes)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None
