import ast

from gradtrace.rules.base import Invalid, Rule, Truth


class ParameterRebound(Rule):
    code = "GT139"
    name = "parameter-rebound-to-tensor"
    summary = "A trainable parameter is replaced by a tensor computed from it instead of being updated in place."
    severity = "error"
    docs = """
    ## What it does
    Finds two forms of the same mistake:

    - an attribute that `__init__` registered as an `nn.Parameter` assigned a computed tensor
      (`self.w = F.softmax(self.w, 0)`, `self.weight = self.weight * scale`);
    - a hand-written update that rebinds a trainable leaf in a training loop
      (`w = w - lr * w.grad`, with or without `torch.no_grad()`), where the loop differentiates `w` again.

    ## Why is this bad?
    `nn.Module` refuses to replace a registered parameter with a plain tensor: the assignment raises
    "TypeError: cannot assign 'torch.FloatTensor' as parameter". A rebound leaf stops being the tensor
    that trains: without `no_grad` the new `w` is a non-leaf, so on the next iteration `w.grad` is None
    and `w - lr * w.grad` raises TypeError; under `no_grad` the new `w` does not require grad at all, so
    the next `backward()` raises "element 0 of tensors does not require grad", or silently trains nothing.

    ## Example
    ```python
    for step in range(100):
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        w = w - lr * w.grad
    ```

    ## Use instead
    ```python
    for step in range(100):
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
        w.grad = None
    ```

    ## Fix safety
    No automatic fix: the in-place update needs `no_grad` and a reset of `.grad`; for a module, keep the
    parameter and compute the transformed value in a local variable instead.
    """
    valid = (
        """
        import torch

        w = torch.randn(3, requires_grad=True)
        x, y = torch.randn(8, 3), torch.randn(8)
        for step in range(3):
            loss = ((x @ w - y) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                w -= 0.1 * w.grad
            w.grad = None
        """,
        """
        import torch

        w = torch.randn(3, requires_grad=True)
        x, y = torch.randn(8, 3), torch.randn(8)
        for step in range(3):
            loss = ((x @ w - y) ** 2).mean()
            loss.backward()
            w = (w - 0.1 * w.grad).detach().requires_grad_(True)
        """,
        """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F


        class Mixer(nn.Module):
            def __init__(self, n):
                super().__init__()
                self.layer_weights = nn.Parameter(torch.ones(n) / n)

            def forward(self, stacked):
                weights = F.softmax(self.layer_weights, dim=0)
                return (weights[:, None] * stacked).sum(0)
        """,
    )
    invalid = (
        Invalid(
            """
            import torch

            w = torch.randn(3, requires_grad=True)
            x, y = torch.randn(8, 3), torch.randn(8)
            for step in range(3):
                loss = ((x @ w - y) ** 2).mean()
                loss.backward()
                w = w - 0.1 * w.grad  # expect: GT139
            """,
            truth=Truth(raises=("TypeError", "unsupported operand")),
        ),
        Invalid(
            """
            import torch

            w = torch.randn(3, requires_grad=True)
            x, y = torch.randn(8, 3), torch.randn(8)
            for step in range(3):
                loss = ((x @ w - y) ** 2).mean()
                loss.backward()
                with torch.no_grad():
                    w = w - 0.1 * w.grad  # expect: GT139
            """,
            truth=Truth(raises=("RuntimeError", "does not require grad")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            import torch.nn.functional as F


            class Mixer(nn.Module):
                def __init__(self, n):
                    super().__init__()
                    self.layer_weights = nn.Parameter(torch.ones(n) / n)

                def forward(self, stacked):
                    self.layer_weights = F.softmax(self.layer_weights, dim=0)  # expect: GT139
                    return (self.layer_weights[:, None] * stacked).sum(0)


            model = Mixer(4)
            model(torch.randn(4, 5)).sum().backward()
            """,
            truth=Truth(raises=("TypeError", "cannot assign")),
        ),
    )

    def check(self, ctx):
        flow = ctx.torch.flow
        reported = set()
        for event in flow.parameter_reassignments:
            if event.module.path != ctx.path or id(event.node) in reported:
                continue
            reported.add(id(event.node))
            ctx.report(event.node, f"`{event.attr}` is a parameter of `{event.owner.name}`: assigning it a tensor raises TypeError.")
        for event in flow.leaf_rebounds:
            if event.module.path != ctx.path or id(event.node) in reported or event.loop is None:
                continue
            if not (event.reads_grad or event.grad_off) or not _differentiates_in(ctx, event.loop):
                continue
            if flow.releafed.get((id(event.loop), event.name)):
                continue  # made a trainable leaf again in the loop, before the next differentiation
            reported.add(id(event.node))
            if event.grad_off:
                what = f"the new `{event.name}` does not require grad, so the next `backward()` raises"
            else:
                what = f"`{event.name}` is no longer a leaf, so on the next step `{event.name}.grad` is None"
            ctx.report(event.node, f"This rebinds the trainable `{event.name}`: {what}.",
                       data={"lost": [event.name]})
        return ()


def _differentiates_in(ctx, loop: ast.AST) -> bool:
    first, last = loop.lineno, loop.end_lineno or loop.lineno
    for call in ctx.source.nodes(ast.Call):
        if first <= call.lineno <= last and isinstance(call.func, ast.Attribute) and call.func.attr in (
                "backward", "grad"):
            return True
    return False
