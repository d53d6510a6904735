import ast

from gradtrace.analysis.core.values import alive_in
from gradtrace.rules.base import Invalid, Rule, Truth


class UnusedTrainable(Rule):
    code = "GT123"
    name = "trainable-never-used"
    summary = "A tensor that requires grad is handed to the optimizer but never reaches the loss."
    docs = """
    ## What it does
    Finds tensors created with `requires_grad=True` (or `nn.Parameter`s at module level) that are given
    to an optimizer, while no loss that `backward()` is called on uses them at all.

    ## Why is this bad?
    A tensor that does not take part in the loss gets no gradient: its `.grad` stays `None` and the
    optimizer never moves it. Usually a typo (`w2` used twice instead of `w3`) or a term dropped from
    the loss.

    ## Example
    ```python
    w1, w2, w3 = (torch.randn(3, requires_grad=True) for _ in range(3))
    opt = torch.optim.SGD([w1, w2, w3], lr=0.1)
    loss = (w1 * x + w2).sum()
    ```

    ## Use instead
    ```python
    loss = (w1 * x * x + w2 * x + w3).sum()
    ```

    ## Fix safety
    No automatic fix: use the tensor in the loss, or stop optimizing it.
    """
    valid = (
        """
        import torch

        w = torch.randn(3, requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([w, b], lr=0.1)
        loss = ((torch.randn(4, 3) @ w + b) ** 2).mean()
        loss.backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch

            w = torch.randn(3, requires_grad=True)
            b = torch.zeros(1, requires_grad=True)
            scale = torch.ones(1, requires_grad=True)  # expect: GT123
            opt = torch.optim.SGD([w, b, scale], lr=0.1)
            loss = ((torch.randn(4, 3) @ w + b) ** 2).mean()
            loss.backward()
            """,
            truth=Truth(grads={"scale": "none"}),
        ),
    )

    def check(self, ctx):
        facts = ctx.torch
        flow = facts.flow
        sinks = [s for s in facts.training_sinks if s.module.path == ctx.path]
        if not sinks or any(s.value.opaque for s in sinks):
            return ()
        touched = set(facts.alive) | _gradients_set_by_hand(ctx)
        for sink in sinks:
            for c in sink.value.cuts:
                touched |= c.lost
        for optimizer in flow.optimizers:
            if not optimizer.known or optimizer.module.path != ctx.path:
                continue
            for source in sorted(optimizer.coverage.srcs):
                if "." in source or flow.source_kind.get(source) != "leaf" or alive_in(source, frozenset(touched)):
                    continue
                definition = flow.definitions.get(source)
                if definition is None or definition[1].path != ctx.path:
                    continue
                ctx.report(definition[0], f"`{source}` is given to the optimizer but no loss uses it: its `.grad` stays None.",
                           related=[ctx.related(optimizer.node, "optimizer built here")])
        return ()


def _gradients_set_by_hand(ctx) -> set[str]:
    """Names whose `.grad` the code assigns itself (`p.grad = torch.ones_like(p)`): the optimizer applies those."""
    names = set()
    for node in ctx.source.nodes(ast.Assign, ast.AugAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr == "grad" and isinstance(target.value, ast.Name):
                names.add(target.value.id)
    return names

