"""What the TensorFlow and JAX plug-ins read the same way from the source: a call's argument by keyword or
position, the class of a dtype (`tf.int32`, `"float32"`, `jnp.bfloat16`) and the dtype a literal gets."""

from __future__ import annotations

import ast

INT_DTYPES = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool", "string"})


def call_argument(node: ast.Call, name: str, position: int | None = None) -> ast.AST | None:
    """The expression passed as `name=` or at `position` (not after a `*args`), else None."""
    for k in node.keywords:
        if k.arg == name:
            return k.value
    if position is not None and len(node.args) > position and not any(
            isinstance(a, ast.Starred) for a in node.args[: position + 1]):
        return node.args[position]
    return None


def dtype_of(node: ast.AST | None, names) -> str | None:
    """`tf.int32`, "int64", `np.float32` -> "int" / "float" / None (unknown)."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    else:
        text = (names.qualname(node) or "").rsplit(".", 1)[-1]
    if text in INT_DTYPES or text == "int":
        return "int"
    if text.startswith(("float", "bfloat", "complex", "half", "double")) or text == "float":
        return "float"
    return None


def literal_dtype(node: ast.AST | None) -> str | None:
    """The dtype a framework infers from a literal initial value: ints -> "int", any float -> "float"."""
    if node is None:
        return None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return literal_dtype(node.operand)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (bool, int)):
            return "int"
        if isinstance(node.value, float):
            return "float"
        return None
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        kinds = {literal_dtype(e) for e in node.elts}
        if kinds == {"int"}:
            return "int"
        if "float" in kinds and None not in kinds:
            return "float"
    return None


def enclosing(node: ast.AST, parents: dict, kinds: tuple) -> ast.AST | None:
    """The nearest ancestor of `node` of one of `kinds` (through the file's parent index), or None."""
    current = parents.get(id(node))
    while current is not None and not isinstance(current, kinds):
        current = parents.get(id(current))
    return current


def contains(ancestor: ast.AST, node: ast.AST, parents: dict) -> bool:
    current: ast.AST | None = node
    while current is not None:
        if current is ancestor:
            return True
        current = parents.get(id(current))
    return False


FUNCTION_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
