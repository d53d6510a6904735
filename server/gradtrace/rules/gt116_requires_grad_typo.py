import ast

from gradtrace.findings import Edit, Fix
from gradtrace.rules.base import Invalid, Rule, Truth

TYPOS = {"require_grad", "requires_grads", "require_grads", "requires_gradient", "require_gradient",
         "requiresgrad", "requires_gard", "requries_grad", "reqires_grad", "requires_grd", "required_grad",
         "requiers_grad", "requries_grads", "require_grad_", "requires_grads_", "requird_grad"}
SILENT_ATTRS = {t for t in TYPOS if not t.endswith("_")}


def rename_fix(ctx, node: ast.AST, wrong: str, right: str) -> Fix | None:
    span = ctx.span(node)
    line = ctx.source.lines.line(span.end_line)
    end = span.end_column - 1
    if isinstance(node, ast.keyword):
        start = line.find(wrong, span.column - 1 if span.line == span.end_line else 0)
        if start < 0:
            return None
        return Fix(f"Rename `{wrong}` to `{right}`", True,
                   (Edit(span.line, start + 1, span.line, start + 1 + len(wrong), right),))
    start = end - len(wrong)
    if line[start:end] != wrong:
        return None
    return Fix(f"Rename `{wrong}` to `{right}`", True,
               (Edit(span.end_line, start + 1, span.end_line, end + 1, right),))


class RequiresGradTypo(Rule):
    code = "GT116"
    name = "requires-grad-typo"
    summary = "A misspelt `requires_grad` (e.g. `require_grad`) silently does nothing."
    docs = """
    ## What it does
    Finds misspellings of `requires_grad` such as `require_grad`, `requires_grads` or
    `requires_gradient`: as an attribute assignment, a keyword argument or a method name.

    ## Why is this bad?
    Assigning `t.require_grad = True` just creates a new Python attribute: the tensor still does not
    require grad (its `.grad` stays `None`; if nothing else requires grad, `backward()` raises). Freezing
    with `p.require_grad = False` freezes nothing. As a keyword (`torch.randn(3, require_grad=True)`)
    or method (`t.require_grad_()`), the typo raises instead.

    ## Example
    ```python
    delta = torch.zeros_like(images)
    delta.require_grad = True
    ```

    ## Use instead
    ```python
    delta = torch.zeros_like(images)
    delta.requires_grad = True
    ```

    ## Fix safety
    Safe: renaming to `requires_grad` is what the code meant.
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

            delta = torch.zeros(3)
            delta.require_grad = True  # expect: GT116
            loss = (delta * 2).sum()
            loss.requires_grad_()
            loss.backward()
            """,
            fixed="""
            import torch

            delta = torch.zeros(3)
            delta.requires_grad = True  # expect: GT116
            loss = (delta * 2).sum()
            loss.requires_grad_()
            loss.backward()
            """,
            truth=Truth(grads={"delta": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn

            net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
            for name, p in net.named_parameters():
                p.requires_grads = name.startswith("1.")  # expect: GT116
            """,
        ),
    )

    def check(self, ctx):
        for node in ctx.source.nodes(ast.Attribute, ast.keyword):
            if isinstance(node, ast.Attribute) and node.attr in SILENT_ATTRS and isinstance(node.ctx, ast.Store):
                fix = rename_fix(ctx, node, node.attr, "requires_grad")
                target = ctx.source.segment(node.value)
                ctx.report(node, f"`{node.attr}` is a typo for `requires_grad`: `{target}.requires_grad` does not change.", fix=fix)
            elif isinstance(node, ast.Attribute) and node.attr.rstrip("_") in TYPOS and isinstance(node.ctx, ast.Load):
                if node.attr.endswith("_"):
                    fix = rename_fix(ctx, node, node.attr, "requires_grad_")
                    ctx.report(node, f"`{node.attr}()` is a typo for `requires_grad_()`: it raises AttributeError.",
                               severity="error", fix=fix)
            elif isinstance(node, ast.keyword) and node.arg in TYPOS:
                fix = rename_fix(ctx, node, node.arg, "requires_grad")
                ctx.report(node, f"`{node.arg}=` is a typo for `requires_grad=`: torch raises TypeError.", severity="error", fix=fix)
        return ()
