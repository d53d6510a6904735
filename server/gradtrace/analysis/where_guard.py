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


def resolve_condition(cond: ast.AST, semantic, kinds=(ast.Compare,)) -> ast.AST:
    """`mask = x > 0` then `where(mask, ...)`: the comparison (or other `kinds`) the name holds there (from
    the file's semantic model: the assignment the name reads)."""
    if not isinstance(cond, ast.Name):
        return cond
    binding = semantic.binding_of(cond)
    value = binding.value if binding is not None and binding.kind == "assignment" else None
    return value if isinstance(value, kinds) else cond


def guards_singular_point(cond: ast.AST, arg: ast.AST, in_first_branch: bool, wide: bool = False) -> bool:
    """Is the branch computing `f(arg)` unselected exactly where `arg == 0`, by a comparison of `arg`? (`wide`:
    or below any positive threshold, `arg >= 1`, as a root's domain guard is.)"""
    found = _compare(cond, arg, wide)
    if found is None:
        return False
    cond_at_zero = holds_at_zero(*found)
    return cond_at_zero is not None and cond_at_zero != in_first_branch


# ---------------------------------------------------------------- is the NaN certain?
#
# A guard of the singular point says the author expects `x` to leave the domain there, not that the
# masked branch is ever evaluated at a point where its derivative is infinite or NaN:
# - `sqrt`/`rsqrt`/a fractional power has a NaN derivative at every negative `x`, so a guard that masks
#   the negatives of an `x` that can be negative (`x > 0` on a difference) gives NaN at once;
# - `log` and a division have a *finite* derivative at negative `x` (`1/x`): NaN needs `x` exactly 0,
#   which continuous values (`budget - sum(a ** 2)`) practically never are. Exact zeros come from
#   counts and sums of masks, products with a mask, all-zero/literal-zero data, and pairwise
#   differences `z[:, None] - z[None, :]` (their diagonal), and from norms/powers/sums of those.
# (A ReLU output is exactly 0 too, but its own backward *selects* the cotangent, dropping the NaN.)

ZERO_WORDS = ("count", "cnt", "mask", "valid", "length", "lens", "n_tokens", "num_tokens")
SUMS = frozenset({"sum", "nansum", "cumsum"})
PASS_THROUGH = frozenset({"astype", "float", "double", "half", "type", "to", "reshape", "squeeze", "ravel",
                          "flatten", "expand_dims", "unsqueeze", "transpose", "view", "broadcast_to", "abs",
                          "square", "norm", "sqrt", "asarray", "stop_gradient", "detach"})
CONSTRUCTORS = frozenset({"tensor", "array", "asarray", "as_tensor"})
ALL_ZERO = frozenset({"zeros", "zeros_like"})
NONNEG_CALLS = frozenset({"abs", "square", "exp", "sqrt", "norm", "softplus", "sigmoid", "relu", "count_nonzero",
                          "softmax", "exp2", "cosh"})
MAX_DEPTH = 8


def singular_kind(op: str) -> str:
    """"root" (sqrt, rsqrt, non-integer power: NaN derivative at negatives), "log" or "division"."""
    if "sqrt" in op:
        return "root"
    if "pow" in op or op.startswith("**"):
        tail = op.rsplit(",", 1)[-1].rstrip(")").replace("**", "").strip()
        try:
            value = float(tail)
        except ValueError:
            return "root"
        return "division" if value.is_integer() else "root"
    if "log" in op:
        return "log"
    return "division"


def _compare(cond: ast.AST, arg: ast.AST, wide: bool = False):
    """(op, threshold sign) of `arg <op> t` (flipped when written `t <op> arg`), or None. `wide`: any positive
    number is a "pos" threshold, not only an epsilon."""
    if not isinstance(cond, ast.Compare) or len(cond.ops) != 1:
        return None
    left, op, right = cond.left, cond.ops[0], cond.comparators[0]
    if same(right, arg) and not same(left, arg):
        left, right, op = right, left, FLIP[type(op)]()
    if not same(left, arg):
        return None
    sign = sign_of_threshold(right)
    if sign is None and wide and (number(right) or 0) > 0:
        sign = "pos"
    return None if sign is None else (op, sign)


def masks_negatives(cond: ast.AST, arg: ast.AST, in_first_branch: bool) -> bool:
    """Is the branch computing `f(arg)` unselected for every negative `arg` (`arg > 0` or `arg >= 1` with `f`
    first, `arg < 1` with `f` second)? Any threshold >= 0 masks all the negatives (a tiny negative one, almost)."""
    found = _compare(cond, arg, wide=True)
    if found is None:
        return False
    op, _ = found
    at_negative = {ast.Gt: False, ast.GtE: False, ast.Lt: True, ast.LtE: True}.get(type(op))
    return at_negative is not None and at_negative != in_first_branch


def nan_certain(op: str, cond: ast.AST, arg: ast.AST, in_first_branch: bool, semantic, names) -> bool:
    """Does the where that guards the singular point of `op(arg)` really give NaN gradients when run?"""
    root = singular_kind(op) == "root"
    if not guards_singular_point(cond, arg, in_first_branch, wide=root):
        return False
    if root and masks_negatives(cond, arg, in_first_branch) and not non_negative(arg, semantic, names):
        return True
    return can_be_zero(arg, semantic, names)


def _name_of(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def _call_parts(node: ast.Call, names):
    """(last name component, operand, keyword/other args) of `jnp.sum(m, 1)` or `m.sum(1)`."""
    func = node.func
    tail = _name_of(func)
    root = func
    while isinstance(root, ast.Attribute):
        root = root.value
    method = isinstance(func, ast.Attribute) and not (isinstance(root, ast.Name) and root.id in names.aliases)
    operand = func.value if method else (node.args[0] if node.args else None)
    rest = node.args if method else node.args[1:]
    return tail, operand, rest


def _resolve(node: ast.Name, semantic):
    value = resolve_condition(node, semantic, kinds=(ast.expr,))
    return None if value is node else value


def can_be_zero(node: ast.AST | None, semantic, names, depth: int = 0) -> bool:
    """Can `node` be *exactly* 0 in ordinary runs (see above)? Unknown values are assumed not."""
    if node is None or depth > MAX_DEPTH:
        return False
    if isinstance(node, ast.Compare):
        return True  # a boolean mask
    if isinstance(node, ast.Constant):
        return number(node) == 0
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = _name_of(node).lower()
        if any(word in name for word in ZERO_WORDS):
            return True
        value = _resolve(node, semantic) if isinstance(node, ast.Name) else None
        return value is not None and can_be_zero(value, semantic, names, depth + 1)
    if isinstance(node, ast.Subscript):
        return can_be_zero(node.value, semantic, names, depth + 1)
    if isinstance(node, ast.BinOp):
        left = lambda: can_be_zero(node.left, semantic, names, depth + 1)  # noqa: E731
        right = lambda: can_be_zero(node.right, semantic, names, depth + 1)  # noqa: E731
        if isinstance(node.op, ast.Mult):
            return left() or right()
        if isinstance(node.op, (ast.Div, ast.FloorDiv)):
            return left()
        if isinstance(node.op, ast.Pow):
            exponent = number(node.right)
            return exponent is not None and exponent > 0 and left()
        if isinstance(node.op, ast.Add):
            return left() and right()
        if isinstance(node.op, ast.Sub):
            return pairwise(node) or (left() and right())
        return False
    if isinstance(node, ast.Call):
        tail, operand, rest = _call_parts(node, names)
        if tail == "count_nonzero" or tail in ALL_ZERO:
            return True
        if tail in CONSTRUCTORS and isinstance(operand, (ast.List, ast.Tuple)):
            return any(number(e) == 0 for e in ast.walk(operand) if isinstance(e, (ast.Constant, ast.UnaryOp)))
        if tail == "where" and len(node.args) == 3:
            return any(number(b) == 0 or can_be_zero(b, semantic, names, depth + 1) for b in node.args[1:])
        if tail in ("multiply",):
            return any(can_be_zero(a, semantic, names, depth + 1) for a in node.args)
        if tail in ("power", "pow") and rest:
            exponent = number(rest[0])
            return exponent is not None and exponent > 0 and can_be_zero(operand, semantic, names, depth + 1)
        if tail in SUMS or tail in PASS_THROUGH or tail in ("mean", "max", "min", "amax", "prod"):
            return can_be_zero(operand, semantic, names, depth + 1)
        if tail in ("subtract",) and len(node.args) == 2:
            return pairwise(ast.BinOp(node.args[0], ast.Sub(), node.args[1]))
    return False


def pairwise(node: ast.BinOp) -> bool:
    """`z[:, None] - z[None, :]` (or `z[None] - z[:, None]`): all pairs, so a zero diagonal."""
    a, b = node.left, node.right
    if not (isinstance(a, ast.Subscript) and isinstance(b, ast.Subscript) and same(a.value, b.value)):
        return False
    if same(a.slice, b.slice):
        return False
    return any(isinstance(n, ast.Constant) and n.value is None for n in ast.walk(a.slice)) or any(
        isinstance(n, ast.Constant) and n.value is None for n in ast.walk(b.slice))


def non_negative(node: ast.AST | None, semantic, names, depth: int = 0) -> bool:
    """Is `node` >= 0 by construction (squares, norms, abs, exp, sums of those, counts, masks)?"""
    if node is None or depth > MAX_DEPTH:
        return False
    if isinstance(node, ast.Compare):
        return True
    if isinstance(node, ast.Constant):
        value = number(node)
        return value is not None and value >= 0
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = _name_of(node).lower()
        if any(word in name for word in ("count", "cnt", "mask")):
            return True
        value = _resolve(node, semantic) if isinstance(node, ast.Name) else None
        return value is not None and non_negative(value, semantic, names, depth + 1)
    if isinstance(node, ast.Subscript):
        return non_negative(node.value, semantic, names, depth + 1)
    if isinstance(node, ast.BinOp):
        sub = lambda n: non_negative(n, semantic, names, depth + 1)  # noqa: E731
        if isinstance(node.op, ast.Pow):
            exponent = number(node.right)
            return exponent is not None and (exponent % 2 == 0 or sub(node.left))
        if isinstance(node.op, ast.Mult):
            return same(node.left, node.right) or (sub(node.left) and sub(node.right))
        if isinstance(node.op, (ast.Add, ast.Div)):
            return sub(node.left) and sub(node.right)
        return False
    if isinstance(node, ast.Call):
        tail, operand, rest = _call_parts(node, names)
        if tail in NONNEG_CALLS or tail in ALL_ZERO:
            return True
        if tail in ("power", "pow") and rest:
            exponent = number(rest[0])
            return exponent is not None and exponent % 2 == 0
        if tail in SUMS or tail in ("mean", "max", "min", "amax", "astype", "float", "reshape", "squeeze", "ravel"):
            return non_negative(operand, semantic, names, depth + 1)
    return False
