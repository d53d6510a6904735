import ast

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
    `.requires_grad_()`), instead of an `nn.Parameter`.

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
        return ()
