import ast

from gradtrace.analysis.frameworks.torch import api
from gradtrace.analysis.frameworks.torch.plugin import dtype_name, int_literal_data
from gradtrace.findings import Fix
from gradtrace.fixes.edits import replace_node
from gradtrace.rules.base import Invalid, Rule, Truth


def float_literals(ctx, call: ast.Call) -> Fix | None:
    if not call.args:
        return None
    data = call.args[0]
    edits = []
    for node in ast.walk(data):
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            edits.append(replace_node(ctx.source, node, f"{node.value}.0"))
    return Fix("Use float literals", True, tuple(edits)) if edits else None


class IntegerLeaf(Rule):
    code = "GT127"
    name = "integer-requires-grad"
    summary = "`requires_grad=True` on an integer tensor: it raises."
    severity = "error"
    docs = """
    ## What it does
    Finds tensors created with `requires_grad=True` whose dtype is integral: integer literals
    (`torch.tensor([1, 2], requires_grad=True)`), `torch.randint`/`arange` of ints, or an integer dtype.

    ## Why is this bad?
    Only floating-point and complex tensors can require gradients: PyTorch raises "Only Tensors of
    floating point and complex dtype can require gradients".

    ## Example
    ```python
    w = torch.tensor([1, 2], requires_grad=True)
    ```

    ## Use instead
    ```python
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    ```

    ## Fix safety
    Safe for literal data: the same numbers as floats.
    """
    valid = (
        """
        import torch

        w = torch.tensor([1.0, 2.0], requires_grad=True)
        ids = torch.tensor([1, 2])
        """,
    )
    invalid = (
        Invalid(
            """
            import torch

            w = torch.tensor([1, 2], requires_grad=True)  # expect: GT127
            """,
            fixed="""
            import torch

            w = torch.tensor([1.0, 2.0], requires_grad=True)  # expect: GT127
            """,
            truth=Truth(raises=("RuntimeError", "Only Tensors of floating point")),
        ),
        Invalid(
            """
            import torch

            n_classes = 3
            bias = torch.tensor([0] * n_classes, requires_grad=True)  # expect: GT127
            """,
            fixed="""
            import torch

            n_classes = 3
            bias = torch.tensor([0.0] * n_classes, requires_grad=True)  # expect: GT127
            """,
            truth=Truth(raises=("RuntimeError", "Only Tensors of floating point")),
        ),
    )

    def check(self, ctx):
        for node in ctx.source.nodes(ast.Call):
            if not any(k.arg == "requires_grad" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in node.keywords):
                continue
            qn = ctx.names.qualname(node.func) or ""
            short = qn.split(".")[-1]
            if not qn.startswith("torch.") or short not in api.FACTORIES:
                continue
            dtype = dtype_name(node, ctx.names)
            if dtype in api.FLOAT_DTYPES:
                continue
            integral = dtype in api.INT_DTYPES or short in api.INT_FACTORIES or (
                short in ("tensor", "arange", "full") and dtype is None and int_literal_data(node))
            if short == "arange" and dtype is None:
                integral = all(isinstance(a, ast.Constant) and isinstance(a.value, int) for a in node.args)
            if integral:
                ctx.report(node, "Integer tensors cannot require grad: this raises RuntimeError.", fix=float_literals(ctx, node)
                           if short == "tensor" else None)
        return ()
