from gradtrace.rules.base import Invalid, Rule, Truth


class LossWithoutGrad(Rule):
    code = "GT130"
    name = "backward-without-grad"
    summary = "`backward()` on a tensor that nothing trainable reaches: it raises."
    severity = "error"
    docs = """
    ## What it does
    Finds `backward()` called on a value computed only from tensors that do not require grad (no
    parameter, no `requires_grad=True` tensor reaches it), when nothing else explains it.

    ## Why is this bad?
    There is no graph to differentiate: `backward()` raises "element 0 of tensors does not require grad
    and does not have a grad_fn". Usually the tensor that should be trained was created with
    `requires_grad=False` (the default).

    ## Example
    ```python
    x = torch.tensor([1.0, 2.0])
    z = (x * x).sum()
    z.backward()
    ```

    ## Use instead
    ```python
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    z = (x * x).sum()
    z.backward()
    ```

    ## Fix safety
    No automatic fix: decide which tensor should require grad.
    """
    valid = (
        """
        import torch
        import torch.nn as nn

        energy = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1, bias=False))


        def forces(pos):
            with torch.enable_grad():
                pos = pos.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(energy(pos).sum(), pos, create_graph=True)
            return -grad


        loss = ((forces(torch.randn(5, 3)) - torch.randn(5, 3)) ** 2).mean()
        loss.backward()
        """,
        """
        import torch

        x = torch.tensor([1.0, 2.0], requires_grad=True)
        (x * x).sum().backward()
        """,
        """
        import torch

        delta = torch.zeros(3)
        delta.requires_grad = True
        loss = (delta * 2).sum()
        loss.backward()
        """,
        """
        import torch
        import torch.nn as nn


        class PrototypeHead(nn.Module):
            def __init__(self):
                super().__init__()
                self.prototypes = torch.zeros(2, 4)

            def distances(self, x):
                return -torch.cdist(x, self.prototypes)

            def forward(self, x):
                with torch.enable_grad():
                    self.prototypes.requires_grad_()
                    opt = torch.optim.SGD([self.prototypes], lr=0.1)
                    loss = self.distances(x).pow(2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                return self.distances(x).detach()


        head = PrototypeHead()
        print(head(torch.randn(5, 4)))
        """,
    )
    invalid = (
        Invalid(
            """
            import torch

            x = torch.tensor([1.0, 2.0], requires_grad=False)
            z = (x * x).sum()
            z.backward()  # expect: GT130
            """,
            truth=Truth(raises=("RuntimeError", "does not require grad")),
        ),
    )

    def check(self, ctx):
        for sink in ctx.torch.flow.sinks:
            value = sink.value
            if sink.kind != "backward" or sink.module.path != ctx.path:
                continue
            if value.srcs or value.cuts or value.opaque or value.kind != "tensor":
                continue
            ctx.report(sink.node, f"Nothing trainable reaches `{sink.label}`: `backward()` on it raises RuntimeError.")
        return ()
