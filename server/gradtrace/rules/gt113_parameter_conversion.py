import ast

from gradtrace.analysis.frameworks.torch import api
from gradtrace.analysis.modules import classify_value
from gradtrace.findings import Fix
from gradtrace.fixes.edits import replace_node
from gradtrace.rules.base import Invalid, Rule, Truth


def move_inside(ctx, value: ast.expr) -> Fix | None:
    """`nn.Parameter(t).cuda()` → `nn.Parameter(t.cuda())`."""
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)):
        return None
    param_call = value.func.value
    if not (isinstance(param_call, ast.Call) and param_call.args):
        return None
    conversion = ctx.source.segment(value)[len(ctx.source.segment(param_call)):]
    inner = param_call.args[0]
    new_inner = ctx.source.segment(inner) + conversion
    func = ctx.source.segment(param_call.func)
    rest = [ctx.source.segment(a) for a in param_call.args[1:]] + [ctx.source.segment(k) for k in param_call.keywords]
    text = f"{func}({', '.join([new_inner] + rest)})"
    return Fix("Convert the tensor inside `nn.Parameter(...)`", True, (replace_node(ctx.source, value, text),))


class ParameterConversion(Rule):
    code = "GT113"
    name = "parameter-conversion"
    summary = "`nn.Parameter(t).to()/.cuda()/.double()` returns a plain tensor: the parameter is lost."
    docs = """
    ## What it does
    Finds `nn.Parameter(...)` followed by `.to(...)`, `.cuda()`, `.double()` and similar conversions.

    ## Why is this bad?
    The conversion returns an ordinary tensor computed from the parameter, not a `Parameter`: assigned
    to a module attribute it is not registered (missing from `.parameters()`), and it is not a leaf, so
    its `.grad` stays `None`.

    ## Example
    ```python
    self.scale = nn.Parameter(torch.ones(1)).double()
    ```

    ## Use instead
    ```python
    self.scale = nn.Parameter(torch.ones(1).double())
    ```

    ## Fix safety
    Safe: converting the tensor before wrapping it gives the intended parameter.
    """
    valid = (
        """
        import torch
        import torch.nn as nn


        class Scale(nn.Module):
            def __init__(self):
                super().__init__()
                self.scale = nn.Parameter(torch.ones(1).double())

            def forward(self, x):
                return x * self.scale
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Scale(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.scale = nn.Parameter(torch.ones(1)).double()  # expect: GT113

                def forward(self, x):
                    return x * self.scale


            m = Scale()
            registered = len(list(m.parameters()))
            """,
            fixed="""
            import torch
            import torch.nn as nn


            class Scale(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.scale = nn.Parameter(torch.ones(1).double())  # expect: GT113

                def forward(self, x):
                    return x * self.scale


            m = Scale()
            registered = len(list(m.parameters()))
            """,
            truth=Truth(grads={"registered == 0": "true"}),
        ),
    )

    def check(self, ctx):
        if not any(_converts_a_parameter(ctx, call) for call in ctx.source.nodes(ast.Call)):
            return ()  # the question below needs every class's facts: ask it only when it can be yes
        seen = set()
        for info in ctx.torch.module.classes.values():
            for attr in info.attrs.values():
                if attr.kind == "param_converted":
                    seen.add(id(attr.value))
                    method = attr.value.func.attr
                    if method in MAYBE_SAME and not _changes_dtype(ctx, attr.value):
                        ctx.report(attr.value, f"`self.{attr.name}` stops being a parameter if `.{method}()` moves it.", severity="information",
                                   fix=move_inside(ctx, attr.value))
                        continue
                    ctx.report(attr.value, f"`self.{attr.name}` is not a parameter: `.{method}()` after "
                               "`nn.Parameter(...)` returns an unregistered plain tensor.", fix=move_inside(ctx, attr.value))
        for node in ctx.source.nodes(ast.Assign):
            if isinstance(node, ast.Assign) and id(node.value) not in seen and isinstance(node.value, ast.Call):
                value = node.value
                if isinstance(value.func, ast.Attribute) and isinstance(value.func.value, ast.Call) and \
                        value.func.attr in ("to", "cuda", "double", "float", "half", "cpu", "type"):
                    if ctx.names.qualname(value.func.value.func) in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
                        target = ctx.source.segment(node.targets[0])
                        if value.func.attr in MAYBE_SAME and not _changes_dtype(ctx, value):
                            ctx.report(value, f"`{target}` stops being a parameter if `.{value.func.attr}()` moves it.", severity="information",
                                       fix=move_inside(ctx, value))
                            continue
                        ctx.report(value, f"`{target}` is not a parameter: `.{value.func.attr}()` after `nn.Parameter(...)` "
                                   "leaves its `.grad` None.",
                                   fix=move_inside(ctx, value))
        return ()


# Conversions that hand back the parameter itself when the device and dtype already match
# (`.to(device)` on the same device, `.float()` of a float32 tensor): a copy only when they move it.
MAYBE_SAME = ("to", "cpu", "float", "type")
OTHER_DTYPES = ("float64", "double", "float16", "half", "bfloat16", "int", "long", "int64", "int32", "bool",
                "complex64", "complex128", "uint8", "int8", "int16")


def _converts_a_parameter(ctx, call: ast.Call) -> bool:
    """A conversion or view applied right to a new parameter (`nn.Parameter(...).to(...)`)."""
    func = call.func
    if not isinstance(func, ast.Attribute) or not isinstance(func.value, ast.Call):
        return False
    if func.attr in ("to", "cuda", "double", "float", "half", "cpu", "type") \
            and ctx.names.qualname(func.value.func) in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
        return True
    return func.attr in api.NONLEAF_METHODS and classify_value(func.value, ctx.torch.module)[0] == "param"


def _changes_dtype(ctx, call: ast.Call) -> bool:
    """`.to(torch.float64)`, `.type(torch.DoubleTensor)`: a conversion that always copies a float32 tensor."""
    for arg in list(call.args) + [k.value for k in call.keywords if k.arg == "dtype"]:
        name = (ctx.names.qualname(arg) or "").rsplit(".", 1)[-1]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            name = arg.value.rsplit(".", 1)[-1]
        if name in OTHER_DTYPES or name.endswith(("DoubleTensor", "HalfTensor", "LongTensor", "IntTensor")):
            return True
    return False
