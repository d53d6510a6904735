import ast

from gradtrace.analysis.where_guard import (
    ZERO_SINGULAR,
    fractional_power,
    guards_singular_point,
    masks_negatives,
    nan_certain,
    non_negative,
    number,
    resolve_condition,
    singular_kind,
)
from gradtrace.rules.base import Invalid, Rule, Truth

UNSAFE = {"log", "log2", "log10", "sqrt", "rsqrt", "reciprocal", "acos", "asin", "log1p", "pow"}


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id != "self"}


def _unsafe_ops(node: ast.AST, names):
    """(op, operand) for each log/sqrt/reciprocal/pow/division in `node`."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            qn = names.qualname(sub.func) or ""
            short = qn.split(".")[-1] if qn else (sub.func.attr if isinstance(sub.func, ast.Attribute) else "")
            root = sub.func
            while isinstance(root, ast.Attribute):
                root = root.value
            # `x.log()` is a tensor method; `torch.log(x)`, `np.log(x)` name an imported module
            method = isinstance(sub.func, ast.Attribute) and not (isinstance(root, ast.Name) and root.id in names.aliases)
            operand = sub.args[0] if sub.args and not method else (
                sub.func.value if isinstance(sub.func, ast.Attribute) else None)
            if short in UNSAFE and (qn.startswith("torch") or isinstance(sub.func, ast.Attribute)) and operand is not None:
                if short == "pow":
                    exponent = (sub.args[0] if sub.args else None) if method else (
                        sub.args[1] if len(sub.args) > 1 else None)
                    if exponent is None or (number(exponent) is not None and not fractional_power(exponent)):
                        continue  # `x.pow(2)`: a finite derivative everywhere
                    yield f"pow(..., {ast.unparse(exponent)})", operand, fractional_power(exponent)
                else:
                    yield short, operand, short in ZERO_SINGULAR
        elif isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Div):
            yield "division", sub.right, True
        elif isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Pow) and fractional_power(sub.right):
            yield f"** {ast.unparse(sub.right)}", sub.left, True


class WhereNanGradient(Rule):
    code = "GT131"
    name = "where-nan-gradient"
    summary = "`torch.where` guards a log/sqrt/division whose unselected values still poison the gradient with NaN."
    severity = "information"
    docs = """
    ## What it does
    Finds `torch.where(cond, f(x), other)` where `f` is a log, square root, reciprocal, fractional power
    or division that `cond` is meant to guard. It is a warning only where running it gives NaN: `cond`
    compares that same `x` with 0 or an epsilon so that `f(x)` is masked out exactly at `x == 0`, where
    its derivative is infinite (`x > 0`, `x != 0`, `0 < x`, `x >= eps`, or `x == 0` with `f(x)` in the
    second branch; also through `mask = x > 0`), and either `f` is a square root or fractional power
    masked at the negatives of an `x` that can be negative (NaN derivative at every negative value), or
    `x` can be *exactly* 0: a count or sum of a mask, a product with a mask, data with a literal 0,
    a pairwise difference `z[:, None] - z[None, :]` (its diagonal), or a norm, power or sum of those.
    A log or division masked at the negatives of a continuous value has a finite derivative there and
    stays information, like other shapes (`x > 1`, an arcsin, a tensor built without
    `requires_grad`); `x.pow(2)` is fine.

    ## Why is this bad?
    `torch.where` computes both branches: the gradient of the unselected one is multiplied by zero, but
    `0 * inf` is NaN. The loss looks fine and the gradient of `x` (and of everything it is computed
    from) is NaN at exactly the guarded places. Guard the input too ("double where"): replace it by a
    safe value where the condition is false, as below.

    ## Example
    ```python
    y = torch.where(x > 0, torch.log(x), torch.zeros_like(x))
    ```

    ## Use instead
    ```python
    safe_x = torch.where(x > 0, x, torch.ones_like(x))
    y = torch.where(x > 0, torch.log(safe_x), torch.zeros_like(x))
    ```

    ## Fix safety
    No automatic fix: apply the guard to the input too (the "double where").
    """
    valid = (
        """
        import torch

        x = torch.tensor([0.0, 1.0], requires_grad=True)
        safe = torch.where(x > 0, x, torch.ones_like(x))
        y = torch.where(x > 0, torch.log(safe), torch.zeros_like(x))
        y.sum().backward()
        """,
        """
        import torch

        x = torch.tensor([0.0, 1.0], requires_grad=True)
        y = torch.where(x > 0, torch.pow(x, 2), torch.zeros_like(x))
        z = torch.where(x > 0, torch.where(x > 0, x, torch.ones_like(x)) ** 0.5, torch.zeros_like(x))
        (y + z).sum().backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch

            x = torch.tensor([0.0, 1.0], requires_grad=True)
            y = torch.where(x > 0, torch.log(x), torch.zeros_like(x))  # expect: GT131
            y.sum().backward()
            """,
            truth=Truth(grads={"bool(torch.isnan(x.grad).any())": "true"}),
        ),
        Invalid(
            """
            import torch

            z = torch.tensor([[0.0, 1.0], [1.0, 0.0]], requires_grad=True)
            sq = ((z[:, None] - z[None, :]) ** 2).sum(-1)
            dist = torch.where(sq > 0, sq.sqrt(), torch.zeros_like(sq))  # expect: GT131
            dist.sum().backward()
            """,
            truth=Truth(grads={"bool(torch.isnan(z.grad).all())": "true"}),
        ),
    )

    def check(self, ctx):
        if "where" not in ctx.source.text:
            return ()
        semantic = None
        observed = None
        for node in ctx.source.nodes(ast.Call):
            if ctx.names.qualname(node.func) != "torch.where" or len(node.args) != 3:
                continue
            observed = observed if observed is not None else ctx.torch.interp.observed
            seen = observed.get(id(node))
            if seen is not None and not seen[1].srcs:
                continue  # no gradient ever flows through it (gradients off, or only data on both sides)
            semantic = semantic or ctx.source.semantic
            guarded = _names(node.args[0])
            cond = resolve_condition(node.args[0], semantic)
            loose = None
            exact = None
            for n, branch in enumerate(node.args[1:]):
                for op, operand, zero_singular in _unsafe_ops(branch, ctx.names):
                    if zero_singular and guards_singular_point(cond, operand, n == 0) and not _constant_data(
                            operand, ctx.names, semantic) and nan_certain(
                            op, cond, operand, n == 0, semantic, ctx.names):
                        exact = exact or (op, operand, n == 0)
                    elif loose is None and _names(operand) & guarded and not _made_safe(operand, ctx.names):
                        loose = op
            if exact is not None:
                op, operand, first = exact
                x = _short(operand)
                what = "division by" if op == "division" else f"`{op}` of" if not op.startswith("**") else (
                    f"power `{op}` of")
                negative = singular_kind(op) == "root" and masks_negatives(cond, operand, first) and not non_negative(
                    operand, semantic, ctx.names)
                reach = f"once `{x}` <= 0" if negative else f"once `{x}` has a zero"
                ctx.report(node, f"`torch.where({_short(node.args[0])}, ...)` masks the {what} `{x}`: "
                           f"`{x}` gets a NaN gradient {reach}.",
                           severity="warning" if seen is not None else "information")
            elif loose is not None and seen is not None:  # a loose suspicion needs a gradient seen flowing through
                ctx.report(node, f"`torch.where` differentiates both branches: the {loose} of the raw input has a NaN gradient "
                           "where the condition is false.")
        return ()


SAFE = {"torch.where", "torch.clamp", "torch.clip", "torch.maximum", "torch.clamp_min"}


def _made_safe(operand, names) -> bool:
    """`torch.log(torch.where(x > 0, x, 1))`, `torch.sqrt(x.clamp(min=eps))`: the argument is already safe."""
    if not isinstance(operand, ast.Call):
        return False
    qn = names.qualname(operand.func) or ""
    method = operand.func.attr if isinstance(operand.func, ast.Attribute) else ""
    return qn in SAFE or method in ("clamp", "clamp_min", "clip")


CONSTRUCTORS = {"tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "arange", "linspace", "rand", "randn",
                "randint", "empty"}


def _constant_data(operand, names, semantic) -> bool:
    """`counts = torch.tensor([...])` (no `requires_grad=True`) then `torch.log(counts)`: no gradient flows."""
    assigned = resolve_condition(operand, semantic, kinds=(ast.Call,))
    if not isinstance(assigned, ast.Call):
        return False
    qn = names.qualname(assigned.func) or ""
    grad = next((k.value for k in assigned.keywords if k.arg == "requires_grad"), None)
    return qn.startswith("torch.") and qn.rsplit(".", 1)[-1] in CONSTRUCTORS and not (
        grad is not None and not (isinstance(grad, ast.Constant) and not grad.value))


def _short(node, limit=40) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."
