"""Does a `where(cond, f(x), other)` guard exactly the point where `f`'s derivative is infinite?

Shared by the JAX (GT309) and PyTorch (GT131) where-NaN rules. `log`, `sqrt`, `rsqrt`, `reciprocal`, a
division by `x` and `x ** p` with `p < 1` not an integer have an infinite derivative at `x == 0`. When
the condition compares that same `x` with a threshold so that the branch with `f(x)` is *not* selected
at `x == 0` (`x > 0`, `x != 0`, `0 < x`, `x >= eps` for `f` in the first branch; `x == 0`, `x <= 0` for
`f` in the second), the guard exists because `x` reaches 0, and wherever it does the masked branch's
gradient is `0 * inf = NaN`.
"""

from __future__ import annotations

import ast

# functions of one argument whose derivative is infinite at 0 (last dotted component)
ZERO_SINGULAR = frozenset({"log", "log2", "log10", "sqrt", "rsqrt", "reciprocal"})
EPS_MAX = 1e-3
EPS_WORDS = ("eps", "tol", "tiny")
FLIP = {ast.Gt: ast.Lt, ast.Lt: ast.Gt, ast.GtE: ast.LtE, ast.LtE: ast.GtE, ast.Eq: ast.Eq, ast.NotEq: ast.NotEq}


def fractional_power(exponent: ast.AST | None) -> bool:
    """`x ** p` with a literal `p < 1` that is not a non-negative integer: infinite derivative at 0."""
    value = number(exponent)
    return value is not None and value < 1 and not (value >= 0 and float(value).is_integer())


def number(node: ast.AST | None) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = number(node.operand)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    return None


def sign_of_threshold(node: ast.AST) -> str | None:
    """"zero" for 0; "pos"/"neg" for a tiny literal (|t| <= 1e-3) or an eps-like name (`eps`, `self.tol`);
    else None: `x > 1` is a threshold of its own, not a guard of the point 0."""
    value = number(node)
    if value is not None:
        if value == 0:
            return "zero"
        return ("pos" if value > 0 else "neg") if abs(value) <= EPS_MAX else None
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "pos" if any(word in name.lower() for word in EPS_WORDS) else None


def holds_at_zero(op: ast.cmpop, sign: str) -> bool | None:
    """The truth of `0 <op> t` for a threshold `t` of the given sign."""
    table = {
        ast.Gt: {"neg": True, "zero": False, "pos": False},
        ast.GtE: {"neg": True, "zero": True, "pos": False},
        ast.Lt: {"neg": False, "zero": False, "pos": True},
        ast.LtE: {"neg": False, "zero": True, "pos": True},
        ast.Eq: {"zero": True},
        ast.NotEq: {"zero": False},
    }
    return table.get(type(op), {}).get(sign)


def same(a: ast.AST, b: ast.AST) -> bool:
    return ast.dump(a, include_attributes=False) == ast.dump(b, include_attributes=False)


def resolve_condition(cond: ast.AST, where: ast.AST, parents: dict | None, kinds=(ast.Compare,)) -> ast.AST:
    """`mask = x > 0` then `where(mask, ...)`: the comparison (or other `kinds`) the name was last bound to
    before the call, in the same function."""
    if not isinstance(cond, ast.Name) or parents is None:
        return cond
    scope = parents.get(id(where))
    while scope is not None and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module)):
        scope = parents.get(id(scope))
    if scope is None:
        return cond
    found = None
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id == cond.id and node.lineno < where.lineno:
            if found is None or node.lineno > found.lineno:
                found = node
    return found.value if found is not None and isinstance(found.value, kinds) else cond


def guards_singular_point(cond: ast.AST, arg: ast.AST, in_first_branch: bool) -> bool:
    """Is the branch computing `f(arg)` unselected exactly where `arg == 0`, by a comparison of `arg`?"""
    if not isinstance(cond, ast.Compare) or len(cond.ops) != 1:
        return False
    left, op, right = cond.left, cond.ops[0], cond.comparators[0]
    if same(right, arg) and not same(left, arg):
        left, right, op = right, left, FLIP[type(op)]()
    if not same(left, arg):
        return False
    sign = sign_of_threshold(right)
    if sign is None:
        return False
    cond_at_zero = holds_at_zero(op, sign)
    return cond_at_zero is not None and cond_at_zero != in_first_branch
