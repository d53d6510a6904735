from gradtrace.findings import Fix
from gradtrace.fixes.edits import replace_node
from gradtrace.rules._torch_cut import call_receiver, report_dead_cuts
from gradtrace.rules.base import Invalid, Rule, Truth


def drop_data(ctx, dead):
    receiver = call_receiver(dead.cut.node)
    if receiver is None:
        return None
    return Fix("Remove `.data`", True, (replace_node(ctx.source, dead.cut.node, ctx.source.segment(receiver)),))


class DataOnPath(Rule):
    code = "GT106"
    name = "data-on-loss-path"
    summary = "`.data` on the only path from trainable parameters to the loss."
    docs = """
    ## What it does
    Finds `t.data` read on the way to the loss when it disconnects parameters that should train.

    ## Why is this bad?
    `.data` is a view without history that also bypasses autograd's version checks: reads cut the
    graph (the parameters behind it get no gradient), writes can silently corrupt gradients.
    If nothing else in the loss requires grad, `backward()` raises "element 0 of tensors does not
    require grad".

    ## Example
    ```python
    y = torch.sigmoid(w.data * x)
    ```

    ## Use instead
    ```python
    y = torch.sigmoid(w * x)
    ```

    ## Fix safety
    Removing `.data` on the only path is safe for reads; use `.detach()` where a cut is really meant,
    and `with torch.no_grad():` for in-place writes.
    """
    valid = (
        """
        import torch

        w = torch.randn(3, requires_grad=True)
        loss = (w * 2).sum()
        loss.backward()
        print(w.data.norm())
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn
            import torch.nn.functional as F


            class NonNegLinear(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.raw = nn.Parameter(torch.rand(2, 3))
                    self.bias = nn.Parameter(torch.zeros(2))

                @property
                def weight(self):
                    return self.raw.data.clamp(min=0.0)  # expect: GT106

                def forward(self, x):
                    return F.linear(x, self.weight, self.bias)


            layer = NonNegLinear()
            opt = torch.optim.SGD(layer.parameters(), lr=0.1)
            layer(torch.randn(4, 3)).pow(2).mean().backward()
            """,
            fixed="""
            import torch
            import torch.nn as nn
            import torch.nn.functional as F


            class NonNegLinear(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.raw = nn.Parameter(torch.rand(2, 3))
                    self.bias = nn.Parameter(torch.zeros(2))

                @property
                def weight(self):
                    return self.raw.clamp(min=0.0)  # expect: GT106

                def forward(self, x):
                    return F.linear(x, self.weight, self.bias)


            layer = NonNegLinear()
            opt = torch.optim.SGD(layer.parameters(), lr=0.1)
            layer(torch.randn(4, 3)).pow(2).mean().backward()
            """,
            truth=Truth(grads={"layer.raw": "none"}),
        ),
        Invalid(
            """
            import torch

            w = torch.randn(3, requires_grad=True)
            b = torch.randn(3, requires_grad=True)
            x = torch.randn(3)
            y = torch.sigmoid(w.data * x)  # expect: GT106
            loss = (y * b).sum()
            loss.backward()
            """,
            fixed="""
            import torch

            w = torch.randn(3, requires_grad=True)
            b = torch.randn(3, requires_grad=True)
            x = torch.randn(3)
            y = torch.sigmoid(w * x)  # expect: GT106
            loss = (y * b).sum()
            loss.backward()
            """,
            truth=Truth(grads={"w": "none"}),
        ),
    )

    def check(self, ctx):
        report_dead_cuts(ctx, ("data",), fix_builder=drop_data)
        return ()
