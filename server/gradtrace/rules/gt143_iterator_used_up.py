from gradtrace.analysis.frameworks.torch.events import IteratorUsedUp
from gradtrace.analysis.names import dotted
from gradtrace.rules.base import Invalid, Rule, Truth


class ParameterIteratorUsedUp(Rule):
    code = "GT143"
    name = "parameter-iterator-used-up"
    summary = "An optimizer is built over a `parameters()` generator (or `filter`/`map`) already iterated: it is empty."
    severity = "error"
    docs = """
    ## What it does
    Finds a one-shot iterator stored in a name or attribute (`params = model.parameters()`, `filter(...)`,
    `map(...)`, a generator expression) that an optimizer is built over, directly or as the `params` of a param
    group, after something else already iterated it: another optimizer, a `for` loop, `list(...)`,
    `sum(p.numel() for p in params)`. The order is the order the program runs, through helpers and methods
    (built in `__init__`, rebuilt in `train()`); the arms of one `if` exclude each other. It is reported where
    the iterator is stored: that is where to make it a list.

    ## Why is this bad?
    A generator can be iterated once. The second pass finds it empty: an optimizer given only that raises
    `ValueError: optimizer got an empty parameter list`; a param group given it is empty, so those
    parameters are in no optimizer and stop training, silently.

    ## Example
    ```python
    params = model.parameters()
    warmup = torch.optim.SGD(params, lr=0.1)
    optimizer = torch.optim.Adam(params, lr=1e-3)
    ```

    ## Use instead
    ```python
    params = list(model.parameters())
    warmup = torch.optim.SGD(params, lr=0.1)
    optimizer = torch.optim.Adam(params, lr=1e-3)
    ```

    ## Fix safety
    No automatic fix: make the iterator a list where it is stored.
    """
    valid = (
        """
        import torch
        import torch.nn as nn

        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        params = list(model.parameters())
        warmup = torch.optim.SGD(params, lr=0.1)
        optimizer = torch.optim.Adam(params, lr=1e-3)
        """,
        """
        import torch
        import torch.nn as nn

        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        for epoch in range(2):
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1 / (epoch + 1))
            model(torch.randn(3, 4)).sum().backward()
            optimizer.step()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn

            model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
            params = model.parameters()  # expect: GT143
            warmup = torch.optim.SGD(params, lr=0.1)
            optimizer = torch.optim.Adam(params, lr=1e-3)
            """,
            truth=Truth(raises=("ValueError", "empty parameter list")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Solver:
                def __init__(self):
                    self.model = nn.ModuleDict({"backbone": nn.Linear(4, 8), "head": nn.Linear(8, 1)})
                    backbone = list(self.model["backbone"].parameters())
                    self.head_params = filter(lambda p: all(p is not b for b in backbone), self.model.parameters())  # expect: GT143
                    self.optimizer = torch.optim.Adam([{"params": self.head_params, "lr": 1e-2},
                                                       {"params": backbone, "lr": 1e-3}])

                def train(self, epochs):
                    for epoch in range(epochs):
                        x = torch.randn(5, 4)
                        loss = self.model["head"](self.model["backbone"](x)).pow(2).mean()
                        self.optimizer.zero_grad()
                        loss.backward()
                        self.optimizer.step()
                        lr = 1e-3 / (epoch + 2)
                        self.optimizer = torch.optim.Adam([{"params": self.head_params, "lr": lr * 10},
                                                           {"params": self.model["backbone"].parameters(), "lr": lr}])


            solver = Solver()
            solver.train(2)
            head_left_out = not any(p is solver.model["head"].weight for g in solver.optimizer.param_groups
                                    for p in g["params"])
            """,
            truth=Truth(grads={"head_left_out": "true"}),
        ),
    )

    def check(self, ctx):
        for event in ctx.torch.flow.events_of(IteratorUsedUp):
            if event.module.path != ctx.path:
                continue
            name = dotted(event.made.targets[0]) or "this iterator"
            first, line = event.first.lineno, event.node.lineno
            if event.whole:
                effect = f"the optimizer on line {line} gets nothing and raises ValueError"
            else:
                effect = f"its param group on line {line} is empty and those parameters stop training"
            ctx.report(event.made, f"`{name}` can be iterated once: line {first} uses it up, so {effect}.",
                       related=[ctx.related(event.node, "the optimizer that finds it empty"),
                                ctx.related(event.first, "where it was used up")])
        return ()
