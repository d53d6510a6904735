"""Evaluate simple conditions on parameter names (`"encoder" not in name`, `n.startswith("head")`).

Used to decide whether a freezing loop and a name-based optimizer selection can both match the same
parameter, without knowing the model's parameter names: candidate names are built from the string
literals the selection itself uses (the names the author expects to exist).
"""

from __future__ import annotations

import ast

UNKNOWN = None


def evaluate(node: ast.AST, var: str, name: str):
    """True/False for `node` with `var` bound to `name`; None when the condition is not understood."""
    if isinstance(node, ast.BoolOp):
        results = [evaluate(v, var, name) for v in node.values]
        if any(r is None for r in results):
            return UNKNOWN
        return all(results) if isinstance(node.op, ast.And) else any(results)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = evaluate(node.operand, var, name)
        return None if inner is None else not inner
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left, right, op = node.left, node.comparators[0], node.ops[0]
        if isinstance(op, (ast.In, ast.NotIn)) and _is_var(right, var):
            literals = _strings(left)
            if literals is None:
                return UNKNOWN
            hit = any(lit in name for lit in literals)
            return hit if isinstance(op, ast.In) else not hit
        if isinstance(op, (ast.Eq, ast.NotEq)) and (_is_var(left, var) or _is_var(right, var)):
            literals = _strings(right if _is_var(left, var) else left)
            if literals is None:
                return UNKNOWN
            hit = name in literals
            return hit if isinstance(op, ast.Eq) else not hit
        return UNKNOWN
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_var(node.func.value, var):
        if node.func.attr in ("startswith", "endswith") and node.args:
            literals = _strings(node.args[0])
            if literals is None:
                return UNKNOWN
            test = name.startswith if node.func.attr == "startswith" else name.endswith
            return any(test(lit) for lit in literals)
    return UNKNOWN


def literals_in(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def candidate_names(selection: ast.AST) -> list[str]:
    """Plausible parameter names implied by the literals of a selection condition."""
    names = []
    for lit in literals_in(selection):
        core = lit.strip(".")
        if not core:
            continue
        names += [f"{core}.weight", f"{core}.bias", f"{core}.0.weight", f"model.{core}.weight", core]
    return names


def _is_var(node: ast.AST, var: str) -> bool:
    return isinstance(node, ast.Name) and node.id == var


def _strings(node: ast.AST) -> list[str] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return [e.value for e in node.elts]
    return None
