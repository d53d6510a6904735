from gradtrace.rules._torch_cut import report_dead_cuts
from gradtrace.rules.base import Invalid, Rule, Truth


class PythonScalarOnPath(Rule):
    code = "GT101"
    name = "python-scalar-on-path"
    summary = "`.item()`, `float()`, `int()` or `.tolist()` turns a tensor on the loss path into a Python number."
    docs = """
    ## What it does
    Finds `.item()`, `.tolist()`, `float(t)` or `int(t)` applied to a tensor that carries gradient,
    when the resulting Python number (or list) is used to compute the loss.

    ## Why is this bad?
    A Python number has no autograd history: what produced it gets no gradient this way. `.grad` stays `None` when it was the only path (and if nothing else in the loss requires
    grad, `backward()` raises "element 0 of tensors does not require grad"); the gradient is silently
    wrong (a term is missing) when another path remains. Re-wrapping the number with
    `torch.tensor(..., requires_grad=True)` makes a brand-new leaf and hides the error.
    `loss.item()` for logging is fine: it does not feed the loss.

    ## Example
    ```python
    k = float(self.stiffness)
    acc = -k * x - self.damping * v
    ```

    ## Use instead
    ```python
    acc = -self.stiffness * x - self.damping * v
    ```

    ## Fix safety
    No automatic fix: keep the value a tensor (use tensor operations instead of Python arithmetic).
    """
    valid = (
        """
        import torch

        w = torch.randn(3, requires_grad=True)
        opt = torch.optim.SGD([w], lr=0.1)
        loss = (w * torch.randn(3)).sum()
        loss.backward()
        print("loss", loss.item(), float(w.sum()))
        """,
        """
        import torch
        import torch.nn as nn
        from torch.distributions import Categorical

        policy = nn.Linear(4, 3)
        log_probs, rewards = [], []
        for _ in range(5):
            dist = Categorical(logits=policy(torch.randn(4)))
            action = dist.sample()
            log_probs.append(dist.log_prob(action))
            rewards.append(float(action.item() == 1))
        loss = -(torch.stack(log_probs) * torch.tensor(rewards)).sum()
        loss.backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Spring(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.k = nn.Parameter(torch.tensor(2.0))
                    self.c = nn.Parameter(torch.tensor(0.5))

                def forward(self, x):
                    k = float(self.k)  # expect: GT101
                    return -k * x - self.c * x


            model = Spring()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            loss = model(torch.randn(5)).pow(2).mean()
            loss.backward()
            """,
            truth=Truth(grads={"model.k": "none"}),
        ),
        Invalid(
            """
            import torch

            w = torch.randn(3, requires_grad=True)
            x = torch.randn(3)
            fit = (w * x).sum()
            reg = w.pow(2).sum()
            total = torch.tensor(fit.item() + 0.1 * reg.item(), requires_grad=True)  # expect: GT101
            total.backward()
            """,
            truth=Truth(grads={"w": "none"}),
        ),
    )

    def check(self, ctx):
        report_dead_cuts(ctx, ("item",))
        return ()
