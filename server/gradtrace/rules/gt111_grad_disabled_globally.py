from gradtrace.rules._torch_cut import report_dead_cuts
from gradtrace.rules.base import Invalid, Rule, Truth


class GradDisabledGlobally(Rule):
    code = "GT111"
    name = "grad-disabled-globally"
    summary = "`torch.set_grad_enabled(False)` as a statement switches gradients off for everything that follows."
    docs = """
    ## What it does
    Finds `torch.set_grad_enabled(False)` called as a plain statement (not as a `with` block) when a
    later training step is affected: grad mode is process-wide and stays off after the function returns.

    ## Why is this bad?
    Every forward pass after the call records nothing: the parameters get no gradient. With
    nothing else requiring grad, `backward()` raises "element 0 of tensors does not require grad".
    Typically the first epoch trains and everything after the first evaluation does not (or, with
    `requires_grad_()` sprinkled around, the model silently stops training).

    ## Example
    ```python
    def evaluate(model, x):
        torch.set_grad_enabled(False)
        return model(x).mean().item()
    ```

    ## Use instead
    ```python
    def evaluate(model, x):
        with torch.no_grad():
            return model(x).mean().item()
    ```

    ## Fix safety
    No automatic fix: use `with torch.no_grad():` (or restore with `torch.set_grad_enabled(True)`).
    """
    valid = (
        """
        import torch
        import torch.nn as nn

        model = nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(4, 3)
        for epoch in range(2):
            loss = model(x).pow(2).mean()
            loss.backward()
            with torch.set_grad_enabled(False):
                val = model(x).mean()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn


            def validate(model, x):
                model.eval()
                torch.set_grad_enabled(False)  # expect: GT111
                score = model(x).mean().item()
                model.train()
                return score


            model = nn.Linear(3, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            x = torch.randn(4, 3)
            for epoch in range(2):
                opt.zero_grad()
                loss = model(x).pow(2).mean()
                loss.backward()
                opt.step()
                validate(model, x)
            """,
            truth=Truth(raises=("RuntimeError", "does not require grad")),
        ),
    )

    def check(self, ctx):
        report_dead_cuts(ctx, ("grad_disabled",))
        return ()
