from gradtrace.analysis.core.values import display
from gradtrace.rules._torch_cut import names_phrase
from gradtrace.rules.base import Invalid, Rule, Truth


class ZeroMask(Rule):
    code = "GT122"
    name = "zero-times-parameters"
    summary = "`0 * p.sum()` added to the loss hides parameters that get no real gradient."
    severity = "information"
    docs = """
    ## What it does
    Finds terms like `loss + 0 * p.sum()` or `0.0 * model.aux(x).mean()`: trainable values multiplied by
    zero and added to the loss. Only when the zeroed value reaches the loss or the output through that
    product alone: an accumulator started at `x * 0.0` to which `x` is added again is fine.

    ## Why is this bad?
    It is a common way to silence `DistributedDataParallel`'s "parameters that were not used" error or
    a `None` gradient, but the parameters only ever get a gradient of exactly zero: they still do not
    train. It is sometimes intended (a conditionally used branch), hence only information.

    ## Example
    ```python
    loss = criterion(out, y) + 0 * sum(p.sum() for p in model.aux.parameters())
    ```

    ## Use instead
    ```python
    loss = criterion(out, y)   # and DDP(model, find_unused_parameters=True) if the branch is really optional
    ```

    ## Fix safety
    No automatic fix.
    """
    valid = (
        """
        import torch

        w = torch.randn(3, requires_grad=True)
        loss = (w * 2).sum() + 0.1 * w.pow(2).sum()
        loss.backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch

            w = torch.randn(3, requires_grad=True)
            aux = torch.randn(3, requires_grad=True)
            loss = (w * 2).sum() + 0 * aux.sum()  # expect: GT122
            loss.backward()
            """,
            truth=Truth(grads={"aux": "zero"}),
        ),
    )

    def check(self, ctx):
        reported = set()
        for dead in ctx.torch.dead_cuts("zeromask"):
            node, module = dead.cut.node, dead.cut.module
            if module is None or module.path != ctx.path or id(node) in reported:
                continue
            lost = sorted(s for s in dead.lost if not s.startswith("<"))
            if not lost:
                continue
            reported.add(id(node))
            ctx.report(node, f"Multiplying by zero gives {names_phrase(lost)} an all-zero gradient: nothing trains through it.",
                       data={"lost": [display(s) for s in lost], "zero": True})
        return ()
