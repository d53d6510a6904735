import ast

from gradtrace.rules.base import Invalid, Rule, Truth
from gradtrace.rules.gt134_custom_function_backward_mismatch import FUNCTION_BASES, FUNCTIONS


class BackwardGradientUnset(Rule):
    code = "GT144"
    name = "backward-gradient-unset"
    summary = "A custom Function's `backward` returns a gradient it sets only under `ctx.needs_input_grad[i]`."
    severity = "error"
    docs = """
    ## What it does
    In the `backward` of a `torch.autograd.Function`, finds a name assigned only inside `if
    ctx.needs_input_grad[i]:` (with no `else`, and not set before) that is read after that `if`, in the
    `return` or in a later statement outside such a test.

    ## Why is this bad?
    PyTorch sets `needs_input_grad[i]` to False when input `i` does not require grad: the data batch given
    to a network's first layer, a frozen weight. Then the name is never bound and `backward()` raises
    `UnboundLocalError`, so nothing upstream gets a gradient.

    ## Example
    ```python
    if ctx.needs_input_grad[0]:
        grad_input = grad_output @ weight
    if ctx.needs_input_grad[1]:
        grad_weight = grad_output.t() @ x
    return grad_input, grad_weight
    ```

    ## Use instead
    ```python
    grad_input = grad_weight = None
    if ctx.needs_input_grad[0]:
        grad_input = grad_output @ weight
    if ctx.needs_input_grad[1]:
        grad_weight = grad_output.t() @ x
    return grad_input, grad_weight
    ```

    ## Fix safety
    No automatic fix: set the gradients to `None` before the tests.
    """
    valid = (
        """
        import torch


        class LinearFn(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, weight):
                ctx.save_for_backward(x, weight)
                return x @ weight.t()

            @staticmethod
            def backward(ctx, grad_output):
                x, weight = ctx.saved_tensors
                grad_x = grad_weight = None
                if ctx.needs_input_grad[0]:
                    grad_x = grad_output @ weight
                if ctx.needs_input_grad[1]:
                    grad_weight = grad_output.t() @ x
                return grad_x, grad_weight


        weight = torch.randn(2, 3, requires_grad=True)
        LinearFn.apply(torch.randn(4, 3), weight).sum().backward()
        """,
        """
        import torch


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, factor):
                ctx.factor = factor
                return x * factor

            @staticmethod
            def backward(ctx, grad_output):
                if ctx.needs_input_grad[0]:
                    grad_x = grad_output * ctx.factor
                else:
                    grad_x = None
                return grad_x, None


        x = torch.randn(3, requires_grad=True)
        Scale.apply(x, 2.0).sum().backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn


            class LinearFn(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x, weight):
                    ctx.save_for_backward(x, weight)
                    return x @ weight.t()

                @staticmethod
                def backward(ctx, grad_output):
                    x, weight = ctx.saved_tensors
                    if ctx.needs_input_grad[0]:
                        grad_x = grad_output @ weight  # expect: GT144
                    if ctx.needs_input_grad[1]:
                        grad_weight = grad_output.t() @ x  # expect: GT144
                    return grad_x, grad_weight


            weight = nn.Parameter(torch.randn(2, 3))
            LinearFn.apply(torch.randn(4, 3), weight).sum().backward()
            """,
            truth=Truth(raises=("UnboundLocalError", "grad_x")),
        ),
    )

    def check(self, ctx):
        if "needs_input_grad" not in ctx.source.text:
            return ()
        for cls in ctx.source.nodes(ast.ClassDef):
            if not any(ctx.names.qualname(b) in FUNCTION_BASES for b in cls.bases):
                continue
            backward = next((n for n in cls.body if isinstance(n, FUNCTIONS) and n.name == "backward"), None)
            if backward is not None:
                for name, stmt, index in unset_gradients(backward):
                    ctx.report(stmt, f"`{name}` is set only if `ctx.needs_input_grad[{index}]`: for an input without "
                                     "grad, `backward()` raises UnboundLocalError.")
        return ()


def unset_gradients(backward: ast.FunctionDef) -> list:
    """(name, its assignment, the input index) for names bound only under `if ctx.needs_input_grad[i]:` in one
    block of `backward` and read after that `if` outside any such test."""
    found = []

    def block(stmts: list, outer: set) -> None:
        for position, stmt in enumerate(stmts):
            index = _needs_input_grad(stmt)
            bound = outer | _bound_before(stmts[:position])
            if index is not None and not stmt.orelse:
                for name, assignment in _bound_in(stmt.body).items():
                    if name not in bound and _read_after(stmts[position + 1:], name):
                        found.append((name, assignment, index))
            for field in ("body", "orelse", "finalbody"):
                inner = getattr(stmt, field, None)
                if isinstance(inner, list) and index is None and not isinstance(stmt, FUNCTIONS + (ast.ClassDef,)):
                    block(inner, bound)

    block(backward.body, {a.arg for a in ast.walk(backward.args) if isinstance(a, ast.arg)})
    return found


def _needs_input_grad(stmt: ast.stmt):
    """The index `i` of `if ctx.needs_input_grad[i]:`, else None."""
    if not isinstance(stmt, ast.If):
        return None
    test = stmt.test
    if isinstance(test, ast.Subscript) and isinstance(test.value, ast.Attribute) \
            and test.value.attr == "needs_input_grad" and isinstance(test.slice, ast.Constant):
        return test.slice.value
    return None


def _bound_in(stmts: list) -> dict:
    out: dict = {}
    for stmt in stmts:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                out.setdefault(node.id, stmt)
    return out


def _bound_before(stmts: list) -> set:
    names: set = set()
    for stmt in stmts:
        if _needs_input_grad(stmt) is None:
            names |= set(_bound_in([stmt]))
    return names


def _read_after(stmts: list, name: str) -> bool:
    """Is `name` read in these statements, outside an `if ctx.needs_input_grad[...]` test?"""
    for stmt in stmts:
        if _needs_input_grad(stmt) is not None:
            continue
        if any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load) for n in ast.walk(stmt)):
            return True
    return False
