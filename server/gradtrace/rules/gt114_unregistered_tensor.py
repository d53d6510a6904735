import ast

from gradtrace.analysis.modules import classify_value
from gradtrace.findings import Fix
from gradtrace.fixes.edits import replace_node
from gradtrace.rules.base import Invalid, Rule, Truth
from gradtrace.rules.gt115_unregistered_container import nn_prefix

DEVICE_METHODS = {"to", "cuda", "cpu"}


def parameter_fix(ctx, value: ast.expr) -> Fix | None:
    """`torch.randn(3, requires_grad=True).to(dev)` → `nn.Parameter(torch.randn(3))`."""
    core = value
    while isinstance(core, ast.Call) and isinstance(core.func, ast.Attribute) and core.func.attr in DEVICE_METHODS | {
        "requires_grad_"
    } and isinstance(core.func.value, ast.Call):
        core = core.func.value
    if not isinstance(core, ast.Call):
        return None
    text = ctx.source.segment(core)
    keep = [k for k in core.keywords if k.arg != "requires_grad"]
    if len(keep) != len(core.keywords):
        func = ctx.source.segment(core.func)
        parts = [ctx.source.segment(a) for a in core.args] + [ctx.source.segment(k) for k in keep]
        text = f"{func}({', '.join(parts)})"
    return Fix(f"Wrap in `{nn_prefix(ctx)}.Parameter`", True,
               (replace_node(ctx.source, value, f"{nn_prefix(ctx)}.Parameter({text})"),))


class UnregisteredTensor(Rule):
    code = "GT114"
    name = "unregistered-tensor"
    summary = "A tensor with `requires_grad=True` stored on an `nn.Module` is not a registered parameter."
    docs = """
    ## What it does
    Finds `nn.Module` attributes assigned a plain tensor created with `requires_grad=True` (or
    `.requires_grad_()`), instead of an `nn.Parameter`, and such a tensor registered as a buffer
    (`self.register_buffer("scale", torch.tensor(10.0, requires_grad=True))`): it gets a gradient, but a
    buffer is never one of `parameters()`.

    ## Why is this bad?
    Only `nn.Parameter` attributes are registered: the tensor is missing from `model.parameters()`, so
    an optimizer built from it never updates it, `model.to(device)` does not move it and
    `state_dict()` does not save it. If `.to()`/`.cuda()` follows `requires_grad=True`, it is not even a
    leaf, and its `.grad` stays `None`.

    ## Example
    ```python
    self.keys = torch.randn(64, 128, requires_grad=True)
    ```

    ## Use instead
    ```python
    self.keys = nn.Parameter(torch.randn(64, 128))
    ```

    ## Fix safety
    Safe: wraps the tensor in `nn.Parameter` (which requires grad), dropping `requires_grad=True` and
    a trailing `.to()`/`.cuda()` (`model.to()` moves registered parameters).
    """
    valid = (
        """
        import torch
        import torch.nn as nn


        class StandInBody(nn.Module):
            # a test stand-in: hands back a fresh activation that requires grad, made in forward
            def forward(self, ids):
                self.hidden = torch.randn(ids.shape[0], 4, requires_grad=True)
                return self.hidden
        """,
        """
        import torch
        import torch.nn as nn


        class Memory(nn.Module):
            def __init__(self):
                super().__init__()
                self.keys = nn.Parameter(torch.randn(4, 3))
                self.register_buffer("mask", torch.ones(4))
                self.scale = torch.ones(1)

            def forward(self, q):
                return (q @ self.keys.T) * self.mask * self.scale
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Memory(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.keys = torch.randn(4, 3, requires_grad=True)  # expect: GT114

                def forward(self, q):
                    return q @ self.keys.T


            mem = Memory()
            n_params = len(list(mem.parameters()))
            """,
            fixed="""
            import torch
            import torch.nn as nn


            class Memory(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.keys = nn.Parameter(torch.randn(4, 3))  # expect: GT114

                def forward(self, q):
                    return q @ self.keys.T


            mem = Memory()
            n_params = len(list(mem.parameters()))
            """,
            truth=Truth(grads={"n_params == 0": "true"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            import torch.nn.functional as F


            class CosineHead(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.weight = nn.Parameter(torch.randn(3, 4) * 0.1)
                    self.register_buffer("scale", torch.tensor(10.0, requires_grad=True))  # expect: GT114

                def forward(self, x):
                    return self.scale * F.normalize(x, dim=-1) @ F.normalize(self.weight, dim=-1).t()


            head = CosineHead()
            opt = torch.optim.SGD(head.parameters(), lr=0.5)
            for _ in range(3):
                opt.zero_grad()
                F.cross_entropy(head(torch.randn(8, 4)), torch.randint(0, 3, (8,))).backward()
                opt.step()
            """,
            # it gets a gradient, and stays where it started
            truth=Truth(grads={"head.scale.grad is not None and float(head.scale) == 10.0": "true"}),
        ),
    )

    def check(self, ctx):
        if "requires_grad" not in ctx.source.text:
            return ()  # no tensor made to require grad: no class facts needed
        for info in ctx.torch.module.classes.values():
            if not info.is_module:
                continue
            for attr in info.attrs.values():
                if attr.kind != "tensor_grad" or attr.method == "forward":
                    continue  # made anew in forward (a stand-in activation, a probe input): not a weight to keep
                ctx.report(attr.value, f"`self.{attr.name}` is a plain tensor, not an `nn.Parameter`: "
                           f"`{info.name}.parameters()` leaves it out.", fix=parameter_fix(ctx, attr.value))
            for name, value in buffers_requiring_grad(info):
                ctx.report(value, f"`{name}` is registered as a buffer: it requires grad, but "
                           f"`{info.name}.parameters()` leaves it out, so no optimizer built from it trains it.")
        return ()


def buffers_requiring_grad(info):
    """(name, value) of `self.register_buffer("scale", torch.tensor(10.0, requires_grad=True))` in the class's own
    methods: a buffer is never one of `parameters()`, whatever its tensor requires."""
    for method_name, method in info.methods.items():
        if method_name == "forward":
            continue
        for node in ast.walk(method):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "register_buffer" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "self" and len(node.args) >= 2):
                continue
            name, value = node.args[0], node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str) and \
                    classify_value(value, info.module)[0] == "tensor_grad":
                yield name.value, value
