from gradtrace.rules.base import Invalid, Rule, Truth


class RequiresGradOnNonLeaf(Rule):
    code = "GT124"
    name = "requires-grad-on-non-leaf"
    summary = "Setting `.requires_grad = True` on a computed tensor raises; `.requires_grad_()` after a cut hides it."
    severity = "error"
    docs = """
    ## What it does
    Finds `t.requires_grad = True` on a tensor computed from trainable values (a non-leaf), and
    `x.detach().requires_grad_()`-style "fixes" applied to a value on the loss path.

    ## Why is this bad?
    Only leaf tensors' flags can change: the assignment raises "you can only change requires_grad
    flags of leaf variables". Re-marking a detached value as requiring grad silences the
    "does not require grad" error but makes a brand-new leaf: the model behind it still gets no
    gradient. Find the real cut instead.

    ## Example
    ```python
    out = model(x)
    out.requires_grad = True
    ```

    ## Use instead
    ```python
    out = model(x)          # already requires grad when the model has trainable parameters
    ```

    ## Fix safety
    No automatic fix.
    """
    valid = (
        """
        import torch

        x = torch.zeros(3)
        x.requires_grad = True
        (x * 2).sum().backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch

            w = torch.randn(3, requires_grad=True)
            out = w * 2
            out.requires_grad = True  # expect: GT124
            """,
            truth=Truth(raises=("RuntimeError", "you can only change requires_grad flags of leaf variables")),
        ),
    )

    def check(self, ctx):
        for event in ctx.torch.flow.nonleaf_flags:
            if event.module.path != ctx.path:
                continue
            ctx.report(event.node, f"`{event.var}` is computed from tensors that require grad: setting its `requires_grad` raises.")
        return ()
