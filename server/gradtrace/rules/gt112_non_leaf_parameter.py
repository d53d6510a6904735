import ast
import re

from gradtrace.analysis.frameworks.torch import api
from gradtrace.findings import Fix
from gradtrace.fixes.edits import replace_node
from gradtrace.rules._torch_cut import names_phrase
from gradtrace.rules.base import Invalid, Rule, Truth


def _requires_grad_kw(call: ast.Call) -> ast.keyword | None:
    for k in call.keywords:
        if k.arg == "requires_grad" and isinstance(k.value, ast.Constant) and k.value.value is True:
            return k
    return None


CONVERSIONS = ("to", "cuda", "double", "float", "half", "cpu", "type", "bfloat16")


def find_leaf_factory(ctx, expr: ast.expr) -> tuple[ast.Call, str] | None:
    """(the leaf it starts from — a factory call with requires_grad=True or `nn.Parameter(...)` — and the
    operation that follows it) inside `expr`."""
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
        inner = expr.func.value
        if expr.func.attr in ("requires_grad_", "detach", "detach_"):
            return None
        if isinstance(inner, ast.Call) and _is_leaf(ctx, inner):
            if expr.func.attr in api.NONLEAF_METHODS:
                return inner, f".{expr.func.attr}()"
        return find_leaf_factory(ctx, inner) if isinstance(inner, ast.Call) else None
    if isinstance(expr, ast.BinOp):
        for side, other in ((expr.left, expr.right), (expr.right, expr.left)):
            if isinstance(side, ast.Call) and _is_leaf(ctx, side):
                symbol = {ast.Mult: "*", ast.Div: "/", ast.Add: "+", ast.Sub: "-"}.get(type(expr.op))
                operand = ctx.source.segment(other) or ""
                if symbol is None:
                    return side, "arithmetic"
                if len(operand) > 20 or "\n" in operand:
                    return side, symbol
                return side, f"{symbol} {operand}" if side is expr.left else f"{operand} {symbol}"
    return None


def _is_leaf(ctx, call: ast.Call) -> bool:
    return _is_factory(ctx, call) and _requires_grad_kw(call) is not None or _is_parameter(ctx, call)


def _is_factory(ctx, call: ast.Call) -> bool:
    qn = ctx.names.qualname(call.func)
    return bool(qn) and qn.startswith("torch.") and qn.split(".")[-1] in api.FACTORIES


def _is_parameter(ctx, call: ast.Call) -> bool:
    """`nn.Parameter(data)` that requires grad (the default)."""
    if ctx.names.qualname(call.func) not in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
        return False
    flag = next((k.value for k in call.keywords if k.arg == "requires_grad"), call.args[1] if len(call.args) > 1 else None)
    return len(call.args) >= 1 and (flag is None or isinstance(flag, ast.Constant) and flag.value is True)


def make_leaf_fix(ctx, value: ast.expr, factory: ast.Call) -> Fix | None:
    if _is_parameter(ctx, factory):
        # nn.Parameter(data) * s  ->  nn.Parameter(data * s): the same values, a registered leaf
        text = ctx.source.segment(value)
        old_factory = ctx.source.segment(factory)
        if old_factory not in text or len(factory.args) != 1 or factory.keywords:
            return None
        data = ctx.source.segment(factory.args[0])
        if not isinstance(factory.args[0], (ast.Call, ast.Name, ast.Attribute, ast.Subscript)):
            data = f"({data})"
        inner = text.replace(old_factory, data, 1)
        return Fix("Apply the operation inside `nn.Parameter(...)`", True,
                   (replace_node(ctx.source, value, f"{ctx.source.segment(factory.func)}({inner})"),))
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

    Also finds an optimizer given such a computed tensor directly, however it was built: a slice or a
    row of a parameter (`itertools.chain(*model.parameters())` iterates each parameter's rows), `w * 2`,
    `w.to(device)`.

    ## Why is this bad?
    The variable holds the *result* of the operation, a non-leaf tensor: autograd accumulates the
    gradient in the hidden leaf created first, so `w.grad` stays `None` (with a warning when read), and
    an optimizer given `w` never moves it. `torch.optim` refuses a non-leaf tensor outright:
    `ValueError: can't optimize a non-leaf Tensor`. Stored on a module (`self.w = nn.Parameter(...) * 0.5`),
    the computed tensor is not registered, so `parameters()` and the optimizer leave it out, and it keeps
    the graph built at construction: the second `backward()` through it raises, since that graph was
    freed by the first.

    ## Example
    ```python
    w = torch.randn(d, k, requires_grad=True) / math.sqrt(d)
    ```

    ## Use instead
    ```python
    w = (torch.randn(d, k) / math.sqrt(d)).requires_grad_()
    ```
    and give the optimizer the parameters themselves: `[*model.parameters(), w]`, not
    `itertools.chain(*model.parameters(), w)`.

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
        Invalid(
            """
            import torch

            w = torch.randn(2, 3, requires_grad=True).t()  # expect: GT112
            b = torch.zeros(2, requires_grad=True)
            params = [(w, b)]
            (torch.randn(4, 3) @ w + b).sum().backward()
            with torch.no_grad():
                for t in (w, b):
                    if t.grad is not None:  # skips w: its update never happens
                        t -= 0.1 * t.grad
            """,
            truth=Truth(grads={"w": "none", "b": "ok"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Scaled(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.lin = nn.Linear(3, 1)
                    self.scale = nn.Parameter(torch.ones(1)) * 0.5  # expect: GT112

                def forward(self, x):
                    return self.lin(x * self.scale)


            model = Scaled()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for _ in range(2):
                opt.zero_grad()
                model(torch.randn(4, 3)).pow(2).mean().backward()
                opt.step()
            """,
            fixed="""
            import torch
            import torch.nn as nn


            class Scaled(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.lin = nn.Linear(3, 1)
                    self.scale = nn.Parameter(torch.ones(1) * 0.5)  # expect: GT112

                def forward(self, x):
                    return self.lin(x * self.scale)


            model = Scaled()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for _ in range(2):
                opt.zero_grad()
                model(torch.randn(4, 3)).pow(2).mean().backward()
                opt.step()
            """,
            truth=Truth(raises=("RuntimeError", "Trying to backward through the graph a second time")),
        ),
        Invalid(
            """
            import itertools
            import torch

            net = torch.nn.Linear(2, 1)
            scale = torch.ones(1, requires_grad=True)
            opt = torch.optim.SGD(itertools.chain(*net.parameters(), scale), lr=0.1)  # expect: GT112
            """,
            truth=Truth(raises=("ValueError", "can't optimize a non-leaf Tensor")),
        ),
        Invalid(
            """
            import torch

            encoder = torch.nn.Linear(4, 4)
            groups = [{"params": encoder.parameters()}, {"params": [encoder.weight * 0.5], "lr": 1e-4}]
            opt = torch.optim.Adam(groups)  # expect: GT112
            """,
            truth=Truth(raises=("ValueError", "can't optimize a non-leaf Tensor")),
        ),
    )

    def check(self, ctx):
        self.check_optimizers(ctx)
        text = ctx.source.text
        for node in ctx.source.nodes(ast.Assign):
            if not isinstance(node, ast.Assign) or len(node.targets) != 1:
                continue
            target = node.targets[0]
            found = find_leaf_factory(ctx, node.value)
            if found is None:
                continue
            factory, op = found
            if _is_parameter(ctx, factory) and op.strip(".()") in CONVERSIONS:
                continue  # `nn.Parameter(...).to(...)`: GT113 speaks of conversions
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                what = "`nn.Parameter(...)`" if _is_parameter(ctx, factory) else "`requires_grad=True`"
                ctx.report(node.value, f"`self.{target.attr}` is not a parameter: `{op}` after {what} stores an "
                           "unregistered computed tensor.", severity="warning", fix=make_leaf_fix(ctx, node.value, factory))
                continue
            if not isinstance(target, ast.Name):
                continue
            name = target.id
            in_container = re.search(rf"[\[(,]\s*{re.escape(name)}\s*[,\])]", text) is not None
            # read as a parameter: its `.grad`, or listed for an optimizer (`[w, b]`); an input handed to a
            # model (`model(x)`) is not
            used_as_param = (f"{name}.grad" in text or f"[{name}" in text or f", {name}]" in text
                             or in_container and (f"{name}.grad" in text or "optim" in text) and f"({name})" not in text)
            severity = "warning" if used_as_param else "information"
            ctx.report(node.value, f"`{name}` is not a leaf: `{op}` after `requires_grad=True` leaves `{name}.grad` None.",
                       severity=severity, fix=make_leaf_fix(ctx, node.value, factory))
        return ()

    def check_optimizers(self, ctx):
        """An optimizer given a tensor autograd computed from trainable sources: torch.optim raises."""
        for optimizer in ctx.torch.flow.optimizers:
            given = optimizer.non_leaf
            if given is None or optimizer.module.path != ctx.path:
                continue
            named = sorted(s for s in given.srcs if not s.startswith("<"))
            if not named:
                continue  # computed from a leaf made right there: the assignment that made it is reported
            whose = names_phrase(named)
            ctx.report(optimizer.node, f"The optimizer is given a tensor computed from {whose}, not a leaf: it "
                       "raises ValueError.", severity="error")

