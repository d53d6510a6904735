import ast

from gradtrace.rules._torch_cut import names_phrase, report_dead_cuts
from gradtrace.rules.base import Invalid, Rule, Truth


class NoGradHelper(Rule):
    code = "GT110"
    name = "no-grad-helper-on-path"
    summary = "A helper decorated with `@torch.no_grad()` / `@torch.inference_mode()` is called on the loss path."
    docs = """
    ## What it does
    Finds calls to functions decorated with `@torch.no_grad()` or `@torch.inference_mode()` whose
    result the loss uses, when their inputs come from parameters that should train. Also the `backward`
    of a custom `torch.autograd.Function`, which autograd runs with gradients off: a value it recomputes
    from `ctx.saved_tensors` to differentiate with `torch.autograd.grad` has no history.

    ## Why is this bad?
    The decorator disables gradient recording for everything inside the helper: its result has no
    history, so the layers that produced its input get no gradient. The decorator is invisible at
    the call site, which makes this hard to spot.
    If nothing else in the loss requires grad, `backward()` raises "element 0 of tensors does not
    require grad". In a Function's `backward`, `torch.autograd.grad` then returns None for the inputs
    (or raises without `allow_unused=True`): recompute under `with torch.enable_grad():` instead.

    ## Example
    ```python
    @torch.no_grad()
    def normalize(x):
        return (x - x.mean()) / x.std()

    def forward(self, x):
        return self.fc(normalize(self.enc(x)))
    ```

    ## Use instead
    ```python
    def normalize(x):
        return (x - x.mean()) / x.std()
    ```

    ## Fix safety
    No automatic fix: remove the decorator or add an undecorated variant for training code.
    """
    valid = (
        """
        import torch
        import torch.nn as nn


        @torch.no_grad()
        def accuracy(logits, y):
            return (logits.argmax(-1) == y).float().mean()


        net = nn.Linear(4, 3)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
        logits = net(x)
        loss = nn.functional.cross_entropy(logits, y)
        loss.backward()
        print(accuracy(logits, y))
        """,
        """
        import torch
        import torch.nn as nn


        class SoftClip(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.save_for_backward(x, scale)
                return torch.tanh(x / scale) * scale

            @staticmethod
            def backward(ctx, grad_out):
                x, scale = ctx.saved_tensors
                with torch.enable_grad():
                    x, scale = x.detach().requires_grad_(), scale.detach().requires_grad_()
                    y = torch.tanh(x / scale) * scale
                grad_x, grad_scale = torch.autograd.grad(y, (x, scale), grad_out)
                return grad_x, grad_scale


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.scale = nn.Parameter(torch.ones(4))

            def forward(self, x):
                return SoftClip.apply(self.fc(x), self.scale)


        net = Net()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        net(torch.randn(3, 4)).sum().backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn


            class SoftClip(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x, scale):
                    ctx.save_for_backward(x, scale)
                    return torch.tanh(x / scale) * scale

                @staticmethod
                def backward(ctx, grad_out):
                    x, scale = ctx.saved_tensors
                    y = torch.tanh(x / scale) * scale  # expect: GT110
                    y.requires_grad_()
                    grad_x, grad_scale = torch.autograd.grad(y, (x, scale), grad_out, allow_unused=True)
                    return grad_x, grad_scale


            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(4, 4)
                    self.scale = nn.Parameter(torch.ones(4))

                def forward(self, x):
                    return SoftClip.apply(self.fc(x), self.scale)


            net = Net()
            opt = torch.optim.SGD(net.parameters(), lr=0.1)
            net(torch.randn(3, 4)).sum().backward()
            """,
            truth=Truth(grads={"net.fc.weight": "none", "net.scale": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            @torch.no_grad()  # expect: GT110
            def normalize(x):
                return (x - x.mean()) / (x.std() + 1e-5)


            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.enc = nn.Linear(4, 8)
                    self.fc = nn.Linear(8, 1)

                def forward(self, x):
                    return self.fc(normalize(self.enc(x)))  # expect: GT110


            net = Net()
            opt = torch.optim.SGD(net.parameters(), lr=0.1)
            loss = net(torch.randn(5, 4)).pow(2).mean()
            loss.backward()
            """,
            truth=Truth(grads={"net.enc.weight": "none"}),
        ),
    )

    def check(self, ctx):
        report_dead_cuts(ctx, ("no_grad_helper", "function_backward"))
        # Also at the decorator itself, once: that is the line to change.
        seen = set()
        for dead in ctx.torch.dead_cuts("no_grad_helper"):
            via = dead.cut.via
            if via is None or id(via) in seen or dead.cut.module is None:
                continue
            seen.add(id(via))
            func_source = dead.cut.module.source
            decorated = next((n for n in ctx.source.nodes(ast.FunctionDef) if via in n.decorator_list), None)
            if decorated is None or func_source is None or func_source.path != ctx.path:
                continue
            call_line = ctx.span(dead.cut.node).line
            ctx.report(via, f"`{decorated.name}` runs without gradient recording: its call on line {call_line} gives "
                       f"{names_phrase(dead.lost)} no gradient.", severity=dead.severity, related=[ctx.related(dead.cut.node, "called here")])
        return ()
