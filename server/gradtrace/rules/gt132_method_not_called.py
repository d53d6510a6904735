import ast

from gradtrace.findings import Edit, Fix
from gradtrace.rules.base import Invalid, Rule, Truth

# method -> what is (not) happening, given the receiver's source text
CONSEQUENCES = {
    "requires_grad_": "`{x}` never requires grad",
    "backward": "no gradient is computed",
    "step": "the optimizer never updates the parameters",
    "zero_grad": "gradients accumulate across steps",
    "retain_grad": "`{x}.grad` stays None",
    "train": "the model keeps its current mode",
    "eval": "the model stays in training mode",
}


def properties(tree_nodes) -> set[str]:
    """Names this file defines as properties (a bare `obj.name` there may run code)."""
    found = set()
    for node in tree_nodes:
        for deco in node.decorator_list:
            if (isinstance(deco, ast.Name) and deco.id in ("property", "cached_property")) or (
                    isinstance(deco, ast.Attribute) and deco.attr in ("cached_property", "getter", "setter")):
                found.add(node.name)
    return found


class MethodNotCalled(Rule):
    code = "GT132"
    name = "method-not-called"
    summary = "`x.requires_grad_`, `loss.backward` or `opt.step` without `()`: a no-op."
    docs = """
    ## What it does
    Finds expression statements that only name a method without calling it: `x.requires_grad_`,
    `loss.backward`, `optimizer.step`, `optimizer.zero_grad`, `h.retain_grad`, `model.train` or
    `model.eval` with the parentheses missing.

    ## Why is this bad?
    Naming a method only looks it up and throws the bound method away: nothing happens. The tensor
    never requires grad (its `.grad` stays None), no gradient is computed, the parameters are never
    updated, gradients keep accumulating, or the model stays in the wrong mode — all without an error.
    A model left in training mode keeps dropout active and batch norm updating its running statistics;
    one left in evaluation mode trains with dropout off and batch norm frozen. A non-leaf's `.grad` stays
    None after `backward()` unless `retain_grad()` is really called.

    ## Example
    ```python
    weights = torch.zeros(4)
    weights.requires_grad_
    ```

    ## Use instead
    ```python
    weights = torch.zeros(4)
    weights.requires_grad_()
    ```

    ## Fix safety
    Safe: the call is what the statement meant.
    """
    valid = (
        """
        import torch

        w = torch.zeros(3)
        w.requires_grad_()
        opt = torch.optim.SGD([w], lr=0.1)
        loss = (w * 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step = opt.step
        hook = loss.backward
        callbacks = [opt.zero_grad, opt.step]
        """,
        """
        import torch


        class Trainer:
            @property
            def step(self):
                self.count += 1
                return self.count

            def run(self):
                self.step
        """,
    )
    invalid = (
        Invalid(
            """
            import torch

            weights = torch.zeros(4)
            weights.requires_grad_  # expect: GT132
            bias = torch.zeros(1, requires_grad=True)
            loss = (torch.randn(8, 4) @ weights + bias).pow(2).mean()
            loss.backward()
            """,
            fixed="""
            import torch

            weights = torch.zeros(4)
            weights.requires_grad_()  # expect: GT132
            bias = torch.zeros(1, requires_grad=True)
            loss = (torch.randn(8, 4) @ weights + bias).pow(2).mean()
            loss.backward()
            """,
            truth=Truth(grads={"weights": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn

            model = nn.Linear(4, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            x, y = torch.randn(8, 4), torch.randn(8, 1)
            opt.zero_grad()
            loss = (model(x) - y).pow(2).mean()
            loss.backward  # expect: GT132
            opt.step()
            """,
            fixed="""
            import torch
            import torch.nn as nn

            model = nn.Linear(4, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            x, y = torch.randn(8, 4), torch.randn(8, 1)
            opt.zero_grad()
            loss = (model(x) - y).pow(2).mean()
            loss.backward()  # expect: GT132
            opt.step()
            """,
            truth=Truth(grads={"model.weight": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn

            model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 1))
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for step in range(3):
                opt.zero_grad  # expect: GT132
                loss = model(torch.randn(8, 4)).pow(2).mean()
                loss.backward()
                opt.step  # expect: GT132
            model.eval  # expect: GT132
            """,
            truth=Truth(grads={"model.training": "true"}),
        ),
    )

    def check(self, ctx):
        skip = None
        for stmt in ctx.source.nodes(ast.Expr):
            node = stmt.value
            if not (isinstance(node, ast.Attribute) and node.attr in CONSEQUENCES):
                continue
            if skip is None:
                skip = properties(ctx.source.nodes(ast.FunctionDef, ast.AsyncFunctionDef))
            if node.attr in skip:
                continue
            receiver = ctx.source.segment(node.value)
            if "\n" in receiver:
                continue
            what = CONSEQUENCES[node.attr].format(x=receiver)
            span = ctx.span(node)
            fix = Fix(f"Call `{receiver}.{node.attr}()`", True,
                      (Edit(span.end_line, span.end_column, span.end_line, span.end_column, "()"),))
            ctx.report(node, f"`{receiver}.{node.attr}` without `()` does nothing: {what}.", fix=fix)
        return ()
