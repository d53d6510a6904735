import ast

from gradtrace.findings import Fix
from gradtrace.fixes.edits import replace_node
from gradtrace.rules._torch_cut import report_dead_cuts
from gradtrace.rules.base import Invalid, Rule, Truth


def rewrap_fix(ctx, dead):
    node = dead.cut.node
    if not isinstance(node, ast.Call) or len(node.args) != 1:
        return None
    arg = node.args[0]
    prefix = ctx.source.segment(node.func).rsplit(".", 1)[0] if "." in ctx.source.segment(node.func) else None
    if isinstance(arg, (ast.List, ast.Tuple)) and prefix and not node.keywords:
        items = ctx.source.segment(arg)
        return Fix(f"Use `{prefix}.stack(...)`", False, (replace_node(ctx.source, node, f"{prefix}.stack({items})"),))
    if not node.keywords and isinstance(arg, (ast.Name, ast.Attribute, ast.Subscript, ast.Call)):
        text = ctx.source.segment(arg)
        return Fix("Use `.clone()` to copy without leaving the graph", True,
                   (replace_node(ctx.source, node, f"{text}.clone()"),))
    return None


class RewrapTensor(Rule):
    code = "GT104"
    name = "rewrap-tensor"
    summary = "`torch.tensor(t)`, `torch.Tensor([...])` or `torch.FloatTensor(t)` copies a tensor out of the graph."
    docs = """
    ## What it does
    Finds tensor constructors (`torch.tensor`, `torch.Tensor`, `torch.FloatTensor`, ...) applied to
    tensors that carry gradient on the way to the loss.

    ## Why is this bad?
    These constructors copy the *data* into a new leaf tensor with no history: the parameters that
    produced the input get no gradient through it. `torch.tensor(t)` warns, `torch.tensor([t1, t2])`
    only sometimes, and `torch.Tensor([t1, t2])` is silent. `torch.as_tensor(t)` and `torch.stack`
    keep the graph and are fine.
    If nothing else in the loss requires grad, `backward()` raises "element 0 of tensors does not
    require grad".

    ## Example
    ```python
    losses = torch.tensor([loss_cls, loss_box])
    loss = losses.sum()
    ```

    ## Use instead
    ```python
    losses = torch.stack([loss_cls, loss_box])
    loss = losses.sum()
    ```

    ## Fix safety
    `torch.tensor(t)` → `t.clone()` is safe (a copy that keeps the graph). `torch.tensor([a, b])` →
    `torch.stack([a, b])` is offered but not applied automatically: stack needs tensors of equal shape.
    """
    valid = (
        """
        import torch

        w = torch.randn(3, requires_grad=True)
        a = torch.as_tensor(w * 2, dtype=torch.float32)
        data = torch.tensor([1.0, 2.0, 3.0])
        loss = (a * data).sum()
        loss.backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch

            w1 = torch.randn(3, requires_grad=True)
            w2 = torch.randn(3, requires_grad=True)
            x = torch.randn(3)
            parts = torch.tensor([(w1 * x).sum(), (w2 * x).sum()])  # expect: GT104
            loss = parts.sum().requires_grad_()
            loss.backward()
            """,
            truth=Truth(grads={"w1": "none", "w2": "none"}),
        ),
        Invalid(
            """
            import torch

            w = torch.randn(3, requires_grad=True)
            h = torch.tanh(w)
            copy = torch.tensor(h)  # expect: GT104
            bias = torch.zeros(3, requires_grad=True)
            loss = (copy + bias).sum()
            loss.backward()
            """,
            fixed="""
            import torch

            w = torch.randn(3, requires_grad=True)
            h = torch.tanh(w)
            copy = h.clone()  # expect: GT104
            bias = torch.zeros(3, requires_grad=True)
            loss = (copy + bias).sum()
            loss.backward()
            """,
            truth=Truth(grads={"w": "none"}),
        ),
    )

    def check(self, ctx):
        report_dead_cuts(ctx, ("rewrap",), fix_builder=rewrap_fix)
        return ()
