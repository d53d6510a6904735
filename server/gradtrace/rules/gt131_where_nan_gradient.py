import ast

from gradtrace.rules.base import Invalid, Rule, Truth

UNSAFE = {"log", "log2", "log10", "sqrt", "rsqrt", "reciprocal", "acos", "asin", "log1p", "pow"}


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id != "self"}


def _unsafe_op(node: ast.AST, names, guarded: set[str]) -> str | None:
    """A log/sqrt/division in `node` applied directly to a value the condition guards."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            qn = names.qualname(sub.func) or ""
            short = qn.split(".")[-1] if qn else (sub.func.attr if isinstance(sub.func, ast.Attribute) else "")
            operand = sub.args[0] if sub.args else (sub.func.value if isinstance(sub.func, ast.Attribute) else None)
            if short in UNSAFE and (qn.startswith("torch") or isinstance(sub.func, ast.Attribute)) and operand is not None:
                if _names(operand) & guarded:
                    return short
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Div) and _names(sub.right) & guarded:
            return "division"
    return None


class WhereNanGradient(Rule):
    code = "GT131"
    name = "where-nan-gradient"
    summary = "`torch.where` guards a log/sqrt/division whose unselected values still poison the gradient with NaN."
    severity = "information"
    docs = """
    ## What it does
    Finds `torch.where(cond, f(x), other)` where `f` is a log, square root, reciprocal or division that
    `cond` is meant to guard.

    ## Why is this bad?
    `torch.where` computes both branches: the gradient of the unselected one is multiplied by zero, but
    `0 * inf` is NaN. The loss looks fine and the gradient of `x` is NaN at exactly the guarded places.

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
    )
    invalid = (
        Invalid(
            """
            import torch

            x = torch.tensor([0.0, 1.0], requires_grad=True)
            y = torch.where(x > 0, torch.log(x), torch.zeros_like(x))  # expect: GT131
            y.sum().backward()
            """,
            truth=Truth(grads={"x": "nonfinite"}),
        ),
    )

    def check(self, ctx):
        for node in ctx.source.nodes(ast.Call):
            if ctx.names.qualname(node.func) != "torch.where" or len(node.args) != 3:
                continue
            guarded = _names(node.args[0])
            for branch in node.args[1:]:
                op = _unsafe_op(branch, ctx.names, guarded)
                if op is not None:
                    ctx.report(node, f"`torch.where` evaluates both branches: where the condition is false the "
                               f"{op} still runs on the raw input, and its gradient there is NaN. Guard the input "
                               "too (double where).")
                    break
        return ()
