from gradtrace.rules._torch_cut import report_dead_cuts
from gradtrace.rules.base import Invalid, Rule, Truth


class NumpyRoundTrip(Rule):
    code = "GT102"
    name = "numpy-round-trip"
    summary = "A NumPy round trip (`.detach().numpy()` or `np.*` on a tensor) on the loss path."
    docs = """
    ## What it does
    Finds tensors that carry gradient converted to NumPy (`t.detach().cpu().numpy()`, `np.clip(t, ...)`)
    and converted back (`torch.from_numpy`, `torch.tensor`) on the way to the loss.

    ## Why is this bad?
    NumPy arrays have no autograd history; everything before the conversion gets no gradient from
    this path. The tensor that comes back is a fresh leaf, so nothing fails loudly: the parameters
    upstream simply never train. Only when nothing else in the loss requires grad does `backward()`
    raise "element 0 of tensors does not require grad".

    ## Example
    ```python
    arr = np.clip(h.detach().cpu().numpy(), -3, 3)
    h = torch.from_numpy(arr)
    ```

    ## Use instead
    ```python
    h = torch.clamp(h, -3, 3)
    ```

    ## Fix safety
    No automatic fix: replace the NumPy function with its torch equivalent, or write a custom
    `torch.autograd.Function` with a backward.
    """
    valid = (
        """
        import numpy as np
        import torch
        import torch.nn as nn

        net = nn.Linear(4, 2)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x = torch.tensor(np.ones((3, 4)), dtype=torch.float32)
        loss = net(x).pow(2).mean()
        loss.backward()
        with torch.no_grad():
            preds = net(x).numpy().argmax(1)
        """,
    )
    invalid = (
        Invalid(
            """
            import numpy as np
            import torch
            import torch.nn as nn

            proj, head = nn.Linear(4, 8), nn.Linear(8, 1)
            opt = torch.optim.Adam(list(proj.parameters()) + list(head.parameters()))
            h = proj(torch.randn(5, 4))
            arr = np.clip(h.detach().cpu().numpy(), -1.0, 1.0)  # expect: GT102
            loss = head(torch.from_numpy(arr)).pow(2).mean()
            loss.backward()
            """,
            truth=Truth(grads={"proj.weight": "none", "proj.bias": "none"}),
        ),
    )

    def check(self, ctx):
        report_dead_cuts(ctx, ("numpy",))
        return ()
