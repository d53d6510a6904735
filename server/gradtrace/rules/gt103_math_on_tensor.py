import ast

from gradtrace.findings import Fix
from gradtrace.fixes.edits import replace_node
from gradtrace.rules._torch_cut import report_dead_cuts
from gradtrace.rules.base import Invalid, Rule, Truth

TORCH_EQUIVALENT = {"sqrt", "exp", "log", "log2", "log10", "log1p", "expm1", "sin", "cos", "tan", "tanh", "sinh",
                    "cosh", "asin", "acos", "atan", "atan2", "floor", "ceil", "fabs", "pow", "erf", "erfc",
                    "lgamma", "trunc", "hypot", "copysign", "fmod"}
RENAMED = {"fabs": "abs", "asin": "asin", "acos": "acos"}


def torch_alias(ctx) -> str | None:
    for local, qualified in ctx.names.aliases.items():
        if qualified == "torch":
            return local
    return None


def to_torch(ctx, dead):
    node = dead.cut.node
    alias = torch_alias(ctx)
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute) or alias is None:
        return None
    name = node.func.attr
    if name not in TORCH_EQUIVALENT:
        return None
    func = node.func
    return Fix(f"Use `{alias}.{RENAMED.get(name, name)}`", True,
               (replace_node(ctx.source, func, f"{alias}.{RENAMED.get(name, name)}"),))


class MathOnTensor(Rule):
    code = "GT103"
    name = "math-on-tensor"
    summary = "A `math.*` function applied to a tensor on the loss path returns a Python float."
    docs = """
    ## What it does
    Finds `math.sqrt(t)`, `math.exp(t)`, `math.log(t)` and friends applied to a tensor that carries
    gradient, when the result feeds the loss.

    ## Why is this bad?
    `math` functions convert their argument to a Python float (with a warning for tensors that require
    grad); the result has no autograd history, so the path through it contributes no gradient: the
    gradient is `None` when that was the only path, or silently wrong when another path remains.
    If nothing else in the loss requires grad, `backward()` raises "element 0 of tensors does not
    require grad".

    ## Example
    ```python
    y = math.sqrt(x) + x
    ```

    ## Use instead
    ```python
    y = torch.sqrt(x) + x
    ```

    ## Fix safety
    Safe: `math.f(t)` becomes `torch.f(t)` for the functions torch has under the same meaning.
    """
    valid = (
        """
        import math
        import torch

        w = torch.randn(8, 4, requires_grad=True)
        x = torch.randn(2, 8)
        y = x @ w / math.sqrt(8)
        y.sum().backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import math
            import torch

            scale = torch.tensor(4.0, requires_grad=True)
            x = torch.randn(3)
            y = (x * math.sqrt(scale)).sum()  # expect: GT103
            bias = torch.zeros(1, requires_grad=True)
            loss = y + bias.sum()
            loss.backward()
            """,
            fixed="""
            import math
            import torch

            scale = torch.tensor(4.0, requires_grad=True)
            x = torch.randn(3)
            y = (x * torch.sqrt(scale)).sum()  # expect: GT103
            bias = torch.zeros(1, requires_grad=True)
            loss = y + bias.sum()
            loss.backward()
            """,
            truth=Truth(grads={"scale": "none"}),
        ),
    )

    def check(self, ctx):
        report_dead_cuts(ctx, ("math",), fix_builder=to_torch)
        return ()
