import ast

from gradtrace.rules.base import Invalid, Rule, Truth


class AllowUnused(Rule):
    code = "GT125"
    name = "allow-unused-hides-none"
    summary = "`torch.autograd.grad(..., allow_unused=True)` returns None for inputs the output does not use."
    severity = "information"
    docs = """
    ## What it does
    Finds `torch.autograd.grad(..., allow_unused=True)` calls whose None nothing handles: not when the
    function returns the gradients as they are (its caller decides), nor when it tests them against
    None after the call.

    ## Why is this bad?
    Without the flag, an input that the output does not depend on raises "One of the differentiated
    Tensors appears to not have been used in the graph". With it, the gradient is silently `None`, and
    code that later does arithmetic with it fails far from the cause — or a disconnected parameter is
    never noticed.

    ## Example
    ```python
    g_w, g_b = torch.autograd.grad(loss, [w, b], allow_unused=True)
    ```

    ## Use instead
    ```python
    g_w, g_b = torch.autograd.grad(loss, [w, b], allow_unused=True, materialize_grads=True)
    assert all(g is not None for g in (g_w, g_b))
    ```

    ## Fix safety
    No automatic fix.
    """
    valid = (
        """
        import torch

        w = torch.randn(3, requires_grad=True)
        g, = torch.autograd.grad((w * 2).sum(), [w])
        """,
        """
        import torch


        def grads_or_zeros(loss, params):
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            return [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]


        def raw_grads(outputs, inputs):
            return torch.autograd.grad(outputs, inputs, allow_unused=True)  # the caller handles None
        """,
    )
    invalid = (
        Invalid(
            """
            import torch

            w = torch.randn(3, requires_grad=True)
            b = torch.randn(3, requires_grad=True)
            g_w, g_b = torch.autograd.grad((w * 2).sum(), [w, b], allow_unused=True)  # expect: GT125
            """,
            truth=Truth(grads={"g_b is None": "true"}),
        ),
    )

    def check(self, ctx):
        functions = None
        for node in ctx.source.nodes(ast.Call):
            if ctx.names.qualname(node.func) != "torch.autograd.grad":
                continue
            for kw in node.keywords:
                if kw.arg == "allow_unused" and isinstance(kw.value, ast.Constant) and kw.value.value is True:
                    if any(k.arg == "materialize_grads" for k in node.keywords):
                        continue
                    if functions is None:
                        functions = list(ctx.source.nodes(ast.FunctionDef, ast.AsyncFunctionDef))
                    if none_handled(node, functions):
                        continue
                    ctx.report(kw, "`allow_unused=True` makes the gradient of an unused input a silent None.")
        return ()


def none_handled(call: ast.Call, functions: list) -> bool:
    """The None is not silent: the function returns the gradients as they are (its caller decides), or tests
    something against None after the call (`g if g is not None else torch.zeros_like(p)`)."""
    owner = None
    for fn in functions:
        if fn.lineno <= call.lineno <= (fn.end_lineno or fn.lineno) and (owner is None or fn.lineno > owner.lineno):
            owner = fn
    if owner is None:
        return False
    for node in ast.walk(owner):
        if isinstance(node, ast.Return) and node.value is call:
            return True
        if isinstance(node, ast.Compare) and node.lineno >= call.lineno \
                and any(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops) \
                and any(isinstance(c, ast.Constant) and c.value is None for c in node.comparators):
            return True
    return False
