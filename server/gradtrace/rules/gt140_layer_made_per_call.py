from gradtrace.rules.base import Invalid, Rule, Truth


class LayerMadePerCall(Rule):
    code = "GT140"
    name = "layer-created-in-forward"
    summary = "A layer with parameters is created inside `forward` (or a method it calls) and applied at once."
    docs = """
    ## What it does
    Finds layers with parameters (`nn.Linear(...)`, `nn.Conv2d(...)`, a project `nn.Module`) that a module
    builds inside `forward` or another method that runs per call, and applies right away, instead of
    creating them once in `__init__`.

    ## Why is this bad?
    Every call makes a new, unregistered layer with fresh random weights: the optimizer never sees
    it, and whatever gradient reaches it is thrown away with the layer after the call. It is missing
    from `model.parameters()` (with no other parameters, `torch.optim` raises "optimizer got an empty
    parameter list"). The model never learns through it.

    ## Example
    ```python
    def forward(self, x):
        h = nn.Linear(self.d_in, self.hidden)(x).relu()
        return self.out(h)
    ```

    ## Use instead
    ```python
    def __init__(self, d_in, hidden, d_out):
        super().__init__()
        self.hidden = nn.Linear(d_in, hidden)
        self.out = nn.Linear(hidden, d_out)

    def forward(self, x):
        return self.out(self.hidden(x).relu())
    ```

    ## Fix safety
    No automatic fix: the layer has to move to `__init__` with its sizes, which may only be known there.
    """
    valid = (
        """
        import torch
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)

            def forward(self, x):
                return nn.ReLU()(self.fc(x))
        """,
        """
        import torch
        import torch.nn as nn


        class Lazy(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = None

            def forward(self, x):
                if self.fc is None:
                    self.fc = nn.Linear(x.shape[-1], 2)
                return self.fc(x)
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn


            class ThreeLayerNet(nn.Module):
                def __init__(self, d_in, h, d_out):
                    super().__init__()
                    self.d_in, self.h, self.d_out = d_in, h, d_out
                    self.out = nn.Linear(h, d_out)

                def forward(self, x):
                    h = nn.Linear(self.d_in, self.h)(x).clamp(min=0)  # expect: GT140
                    return self.out(h)


            model = ThreeLayerNet(8, 4, 2)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            model(torch.randn(3, 8)).sum().backward()
            n_params = len(list(model.parameters()))
            """,
            truth=Truth(grads={"n_params == 2": "true"}),
        ),
    )

    def check(self, ctx):
        seen = set()
        for event in ctx.torch.flow.layers_made_per_call:
            if event.module.path != ctx.path or id(event.node) in seen:
                continue
            seen.add(id(event.node))
            ctx.report(event.node, f"`{event.layer}` is made anew on every call of `{event.method}`: no optimizer trains it.")
        return ()
