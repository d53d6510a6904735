import ast

from gradtrace.analysis import torch_api as api
from gradtrace.findings import Fix
from gradtrace.fixes.edits import replace_node
from gradtrace.rules.base import Invalid, Rule, Truth


def _requires_grad_kw(call: ast.Call) -> ast.keyword | None:
    for k in call.keywords:
        if k.arg == "requires_grad" and isinstance(k.value, ast.Constant) and k.value.value is True:
            return k
    return None


def find_leaf_factory(ctx, expr: ast.expr) -> tuple[ast.Call, str] | None:
    """(the factory call with requires_grad=True, the operation that follows it) inside `expr`."""
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
        inner = expr.func.value
        if expr.func.attr in ("requires_grad_", "detach", "detach_"):
            return None
        if isinstance(inner, ast.Call) and _is_factory(ctx, inner) and _requires_grad_kw(inner):
            if expr.func.attr in api.NONLEAF_METHODS:
                return inner, f".{expr.func.attr}()"
        return find_leaf_factory(ctx, inner) if isinstance(inner, ast.Call) else None
    if isinstance(expr, ast.BinOp):
        for side in (expr.left, expr.right):
            if isinstance(side, ast.Call) and _is_factory(ctx, side) and _requires_grad_kw(side):
                return side, {ast.Mult: "*", ast.Div: "/", ast.Add: "+", ast.Sub: "-"}.get(type(expr.op), "arithmetic")
    return None


def _is_factory(ctx, call: ast.Call) -> bool:
    qn = ctx.names.qualname(call.func)
    return bool(qn) and qn.startswith("torch.") and qn.split(".")[-1] in api.FACTORIES


def make_leaf_fix(ctx, value: ast.expr, factory: ast.Call) -> Fix | None:
    kw = _requires_grad_kw(factory)
    func = ctx.source.segment(factory.func)
    parts = [ctx.source.segment(a) for a in factory.args] + [ctx.source.segment(k) for k in factory.keywords if k is not kw]
    new_factory = f"{func}({', '.join(parts)})"
    text = ctx.source.segment(value)
    old_factory = ctx.source.segment(factory)
    if old_factory not in text:
        return None
    text = text.replace(old_factory, new_factory, 1)
    if isinstance(value, ast.BinOp):
        text = f"({text})"
    return Fix("Set `requires_grad` after the operation: `(...).requires_grad_()`", True,
               (replace_node(ctx.source, value, f"{text}.requires_grad_()"),))


class NonLeafParameter(Rule):
    code = "GT112"
    name = "non-leaf-parameter"
    summary = "`requires_grad=True` followed by `.to()`, `.view()`, `* scale`...: the variable is not a leaf."
    docs = """
    ## What it does
    Finds tensors created with `requires_grad=True` and then transformed (`.cuda()`, `.to(...)`,
    `.double()`, `.view(...)`, `* 0.01`, `/ math.sqrt(n)`) before being stored in the variable that is
    meant to be trained.

    ## Why is this bad?
    The variable holds the *result* of the operation, a non-leaf tensor: autograd accumulates the
    gradient in the hidden leaf created first, so `w.grad` stays `None` (with a warning when read), and
    an optimizer given `w` never moves it.

    ## Example
    ```python
    w = torch.randn(d, k, requires_grad=True) / math.sqrt(d)
    ```

    ## Use instead
    ```python
    w = (torch.randn(d, k) / math.sqrt(d)).requires_grad_()
    ```

    ## Fix safety
    Safe: the same values, created first and then marked as requiring grad, give a leaf tensor.
    """
    valid = (
        """
        import torch

        w = (torch.randn(3, 2) * 0.5).requires_grad_()
        b = torch.zeros(2, requires_grad=True)
        opt = torch.optim.SGD([w, b], lr=0.1)
        """,
    )
    invalid = (
        Invalid(
            """
            import torch

            w = torch.randn(6, requires_grad=True).view(3, 2)  # expect: GT112
            x = torch.randn(4, 3)
            (x @ w).sum().backward()
            grads = [w.grad]
            """,
            fixed="""
            import torch

            w = torch.randn(6).view(3, 2).requires_grad_()  # expect: GT112
            x = torch.randn(4, 3)
            (x @ w).sum().backward()
            grads = [w.grad]
            """,
            truth=Truth(grads={"w": "none"}),
        ),
        Invalid(
            """
            import torch

            w = torch.randn(3, 2, requires_grad=True) * 0.01  # expect: GT112
            opt = torch.optim.SGD([w], lr=0.1)
            (torch.randn(4, 3) @ w).sum().backward()
            """,
            truth=Truth(raises=("ValueError", "can't optimize a non-leaf Tensor")),
        ),
    )

    def check(self, ctx):
        text = ctx.source.text
        for node in ctx.source.nodes(ast.Assign):
            if not isinstance(node, ast.Assign) or len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
                continue
            found = find_leaf_factory(ctx, node.value)
            if found is None:
                continue
            factory, op = found
            name = node.targets[0].id
            used_as_param = (f"{name}.grad" in text or f"[{name}" in text or f", {name}]" in text
                             or f"({name}" in text and "optim" in text)
            severity = "warning" if used_as_param else "information"
            ctx.report(node.value, f"`{name}` is not a leaf: `{op}` after `requires_grad=True` stores a computed "
                       f"tensor, so `{name}.grad` stays None and an optimizer cannot train it.",
                       severity=severity, fix=make_leaf_fix(ctx, node.value, factory))
        return ()
