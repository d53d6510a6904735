import ast

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

    Also finds a loss that is a fresh constant on one arm of an `if` (`loss = torch.tensor(0.)` when a batch has
    no targets) and a graph on the others, unless the `backward()` is guarded by a test of the loss
    (`if loss.requires_grad:`): it is reported where that constant is made.

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
        """
        import torch
        import torch.nn as nn


        class Head(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)

            def loss(self, x, targets):
                pred = self.fc(x)
                if len(targets) == 0:
                    loss = torch.tensor(0.0)
                else:
                    loss = ((pred - targets) ** 2).mean()
                return loss


        model = Head()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for targets in [torch.randn(3, 2), torch.zeros(0, 2)]:
            loss = model.loss(torch.randn(len(targets), 4), targets)
            if loss.requires_grad:
                opt.zero_grad()
                loss.backward()
                opt.step()
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
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Head(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(4, 2)

                def loss(self, x, targets):
                    pred = self.fc(x)
                    if len(targets) == 0:
                        loss = torch.tensor(0.0)  # expect: GT130
                    else:
                        loss = ((pred - targets) ** 2).mean()
                    return loss


            model = Head()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for targets in [torch.randn(3, 2), torch.zeros(0, 2)]:
                loss = model.loss(torch.randn(len(targets), 4), targets)
                opt.zero_grad()
                loss.backward()
                opt.step()
            """,
            truth=Truth(raises=("RuntimeError", "does not require grad")),
        ),
    )

    def check(self, ctx):
        told: set = set()
        for sink in ctx.torch.flow.sinks:
            value = sink.value
            if sink.kind != "backward":
                continue
            if value.constant_on and value.srcs and value.kind == "tensor":
                self.constant_on_a_path(ctx, sink, told)
                continue
            if sink.module.path != ctx.path or value.srcs or value.cuts or value.opaque or value.kind != "tensor":
                continue
            ctx.report(sink.node, f"Nothing trainable reaches `{sink.label}`: `backward()` on it raises RuntimeError.")
        return ()

    @staticmethod
    def constant_on_a_path(ctx, sink, told: set) -> None:
        """`loss` is a fresh constant on one arm of an `if` (no boxes in the batch) and a graph on the others."""
        if _guarded(ctx, sink):
            return
        for (stmt_id, index), made, module in sink.value.constant_on:
            branch = ctx.torch.flow.interp.branch_statements.get(stmt_id)
            if branch is None or id(made) in told:
                continue
            told.add(id(made))
            test = ctx.source.segment(branch.test) if module.path == ctx.path else None
            when = (f"When {'not ' if index else ''}`{test}`" if test and len(test) <= 40 else "On one path")
            where = f"`{sink.label}.backward()`" + (f" on line {ctx.source.span(sink.node).line}"
                                                     if sink.module.path == ctx.path else "")
            if module.path == ctx.path:
                related = [ctx.related(sink.node, f"differentiated here (`{sink.label}`)")] \
                    if sink.module.path == ctx.path else []
                ctx.report(made, f"{when}, `{sink.label}` is made of constants like this one: {where} raises "
                                 "RuntimeError.", related=related)
            elif sink.module.path == ctx.path:
                line = module.source.span(made).line
                ctx.report(sink.node, f"On one path `{sink.label}` is a constant (line {line} of "
                                      f"{module.path.rsplit('/', 1)[-1]}): `backward()` raises RuntimeError then.")


def _guarded(ctx, sink) -> bool:
    """`if loss.requires_grad:` / `if loss != 0:` around the backward: the constant path is skipped."""
    if sink.module.path != ctx.path:
        return False
    node = sink.node
    root = sink.label.split(".")[0].split("[")[0]
    parent = ctx.source.semantic.parent(node)
    while parent is not None and not isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module)):
        if isinstance(parent, (ast.If, ast.While, ast.IfExp)):
            test = ctx.source.segment(parent.test)
            if "requires_grad" in test or "grad_fn" in test or root in {
                    n.id for n in ast.walk(parent.test) if isinstance(n, ast.Name)}:
                return True
        parent = ctx.source.semantic.parent(parent)
    return False
