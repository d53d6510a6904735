from gradtrace.rules._torch_cut import report_dead_cuts
from gradtrace.rules.base import Invalid, Rule, Truth


class IntegerCast(Rule):
    code = "GT108"
    name = "integer-cast-on-path"
    summary = "`.long()`, `.int()`, `.bool()` or `.to(int dtype)` on the loss path."
    docs = """
    ## What it does
    Finds integer or boolean casts of tensors that carry gradient, on the way to the loss.

    ## Why is this bad?
    Integer and boolean tensors cannot require grad: the cast silently returns a tensor with no
    history, so everything before it gets no gradient (no error is raised at the cast).
    If nothing else in the loss requires grad, `backward()` raises "element 0 of tensors does not
    require grad".

    ## Example
    ```python
    delay = self.delay_head(feats).squeeze(-1).long()
    return self.table(delay)
    ```

    ## Use instead
    ```python
    weights = torch.softmax(self.delay_logits(feats), -1)   # soft lookup
    return weights @ self.table.weight
    ```

    ## Fix safety
    No automatic fix: keep the value floating point, use a soft relaxation, or a straight-through
    estimator.
    """
    valid = (
        """
        import torch
        import torch.nn as nn

        table = nn.Embedding(10, 4)
        opt = torch.optim.SGD(table.parameters(), lr=0.1)
        ids = torch.randint(0, 10, (5,)).long()
        loss = table(ids).pow(2).mean()
        loss.backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn

            head, table = nn.Linear(4, 1), nn.Embedding(16, 8)
            opt = torch.optim.SGD(list(head.parameters()) + list(table.parameters()), lr=0.1)
            raw = torch.relu(head(torch.randn(5, 4))).squeeze(-1) * 4
            delay = raw.long().clamp(0, 15)  # expect: GT108
            loss = table(delay).pow(2).mean()
            loss.backward()
            """,
            truth=Truth(grads={"head.weight": "none", "head.bias": "none"}),
        ),
    )

    def check(self, ctx):
        report_dead_cuts(ctx, ("intcast",))
        return ()
