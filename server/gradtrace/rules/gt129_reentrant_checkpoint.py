import ast

from gradtrace.findings import Edit, Fix
from gradtrace.rules._torch_cut import report_dead_cuts
from gradtrace.rules.base import Invalid, Rule, Truth


def add_use_reentrant(ctx, dead):
    node = dead.cut.node
    if not isinstance(node, ast.Call) or any(k.arg == "use_reentrant" for k in node.keywords):
        return None
    span = ctx.span(node)
    line = ctx.source.lines.line(span.end_line)
    close = span.end_column - 2  # the ')' of the call, 0-based
    if close < 0 or line[close] != ")":
        return None
    return Fix("Pass `use_reentrant=False`", True,
               (Edit(span.end_line, close + 1, span.end_line, close + 1, ", use_reentrant=False"),))


class ReentrantCheckpoint(Rule):
    code = "GT129"
    name = "reentrant-checkpoint-without-grad-inputs"
    summary = "Reentrant `checkpoint(...)` whose inputs do not require grad: the checkpointed layers get no gradient."
    docs = """
    ## What it does
    Finds `torch.utils.checkpoint.checkpoint(fn, *inputs)` without `use_reentrant=False`, when none of
    the inputs requires grad (frozen embeddings, raw data, LoRA setups) and the checkpointed function's
    parameters should train. A branch on a flag given a literal (`use_checkpoint=True`, its default) is
    followed the way it goes.

    ## Why is this bad?
    Reentrant checkpointing records a graph only when an *input* requires grad, so the output has no
    history: the parameters inside get no gradient, and if nothing else in the loss requires grad,
    `backward()` raises "element 0 of tensors does not require grad". Without `use_reentrant`, torch
    2.13 still uses the reentrant variant (and warns "None of the inputs have requires_grad=True.
    Gradients will be None").

    ## Example
    ```python
    h = checkpoint(block, embeds)
    ```

    ## Use instead
    ```python
    h = checkpoint(block, embeds, use_reentrant=False)
    ```

    ## Fix safety
    Safe: the non-reentrant variant computes the same values and records the graph through parameters.
    """
    valid = (
        """
        import torch
        import torch.nn as nn
        from torch.utils.checkpoint import checkpoint

        block = nn.Linear(3, 3)
        opt = torch.optim.SGD(block.parameters(), lr=0.1)
        h = checkpoint(block, torch.randn(2, 3), use_reentrant=False)
        h.sum().backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn
            from torch.utils.checkpoint import checkpoint

            block = nn.Linear(3, 3)
            head = nn.Linear(3, 1)
            opt = torch.optim.SGD([*block.parameters(), *head.parameters()], lr=0.1)
            h = checkpoint(block, torch.randn(2, 3))  # expect: GT129
            loss = head(h).sum()
            loss.backward()
            """,
            fixed="""
            import torch
            import torch.nn as nn
            from torch.utils.checkpoint import checkpoint

            block = nn.Linear(3, 3)
            head = nn.Linear(3, 1)
            opt = torch.optim.SGD([*block.parameters(), *head.parameters()], lr=0.1)
            h = checkpoint(block, torch.randn(2, 3), use_reentrant=False)  # expect: GT129
            loss = head(h).sum()
            loss.backward()
            """,
            truth=Truth(grads={"block.weight": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            from torch.utils.checkpoint import checkpoint


            class Regressor(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.stem = nn.Linear(4, 3)
                    self.head = nn.Linear(3, 1)

                def forward(self, x, use_checkpoint=True):
                    if use_checkpoint:
                        h = checkpoint(self.stem, x)  # expect: GT129
                    else:
                        h = self.stem(x)
                    return self.head(torch.relu(h))


            model = Regressor()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            loss = model(torch.randn(8, 4)).pow(2).mean()
            loss.backward()
            """,
            fixed="""
            import torch
            import torch.nn as nn
            from torch.utils.checkpoint import checkpoint


            class Regressor(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.stem = nn.Linear(4, 3)
                    self.head = nn.Linear(3, 1)

                def forward(self, x, use_checkpoint=True):
                    if use_checkpoint:
                        h = checkpoint(self.stem, x, use_reentrant=False)  # expect: GT129
                    else:
                        h = self.stem(x)
                    return self.head(torch.relu(h))


            model = Regressor()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            loss = model(torch.randn(8, 4)).pow(2).mean()
            loss.backward()
            """,
            truth=Truth(grads={"model.stem.weight": "none"}),
        ),
    )

    def check(self, ctx):
        report_dead_cuts(ctx, ("checkpoint",), fix_builder=add_use_reentrant)
        return ()
