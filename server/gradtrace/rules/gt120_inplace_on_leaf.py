import ast

from gradtrace.findings import Edit, Fix
from gradtrace.fixes.edits import enclosing_statement, rewrite_statement
from gradtrace.rules.base import Invalid, Rule, Truth


def switched_off_before(freezes: list, event) -> bool:
    """`w.requires_grad = False` before the in-place write (and not back on in between), as in
    `w.requires_grad = False; w.copy_(new); w.requires_grad = True`: the write meets no leaf that requires grad."""
    at = (event.node.lineno, event.node.col_offset)
    state = None
    for freeze in freezes:
        where = (freeze.node.lineno, freeze.node.col_offset)
        if freeze.module is not event.module or where >= at or not (freeze.srcs & event.target.srcs):
            continue
        if state is None or where > state[0]:
            state = (where, freeze.frozen)
    return state is not None and state[1]


def _loop_binding(ctx, stmt: ast.stmt, var: str) -> bool:
    """Is `var` the target of a `for` loop around `stmt` (e.g. `for p in params: p.add_(...)`)?"""
    semantic = ctx.source.semantic
    return any(b.kind == "loop" and b.name == var for loop in semantic.loops_around(stmt) for b in semantic.made_by(loop))


def no_grad_fix(ctx, stmt: ast.stmt) -> Fix | None:
    """Wrap a parameter update in `with torch.no_grad():` (the update a loop over parameters means)."""
    torch_name = next((local for local, q in ctx.names.aliases.items() if q == "torch"), None)
    if torch_name is None:
        return None
    span = ctx.span(stmt)
    indent = ctx.source.lines.line(span.line)[: span.column - 1]
    if indent.strip():
        return None
    body = ctx.source.segment(stmt).replace("\n", "\n    ")
    text = f"with {torch_name}.no_grad():\n{indent}    {body}"
    return Fix("Update the parameter under `torch.no_grad()`", True,
               (Edit(span.line, span.column, span.end_line, span.end_column, text),))


def out_of_place_fix(ctx, node: ast.AST, stmt: ast.stmt | None, title_var: str) -> Fix | None:
    if stmt is None:
        stmt, _ = enclosing_statement(ctx.source, node)
    if stmt is not None and _loop_binding(ctx, stmt, title_var.split(".")[0]):
        # Rebinding a loop variable would silently update nothing: keep the update, without recording it.
        return no_grad_fix(ctx, stmt)
    if stmt is None or not isinstance(stmt, (ast.Expr, ast.AugAssign)):
        return None
    if isinstance(stmt, ast.Expr) and stmt.value is not node:
        return None
    from gradtrace.fixes.out_of_place import OutOfPlace

    edit = rewrite_statement(ctx.source, stmt, OutOfPlace())
    if edit is None:
        return None
    return Fix(f"Rewrite out of place: `{edit.text.strip()}`", True, (edit,))


class InplaceOnLeaf(Rule):
    code = "GT120"
    name = "inplace-on-leaf"
    summary = "In-place operation on a leaf tensor that requires grad, outside `torch.no_grad()`: it raises."
    severity = "error"
    docs = """
    ## What it does
    Finds in-place operations (`p.add_(...)`, `p += ...`, `p[0] = ...`, `p.zero_()`) on leaf tensors that
    require grad — parameters and tensors created with `requires_grad=True` — outside `torch.no_grad()`.

    ## Why is this bad?
    PyTorch refuses it: "a leaf Variable that requires grad is being used in an in-place operation"
    (or "a view of a leaf Variable that requires grad ..." for indexed writes). Manual updates and
    initialisation belong under `torch.no_grad()`; forward code should compute out of place.
    `x = x.clone(); x.add_(1)` is fine: the clone is not a leaf.

    ## Example
    ```python
    for p in params:
        p.add_(torch.randn_like(p) * 0.01)
    ```

    ## Use instead
    ```python
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p) * 0.01)
    ```

    ## Fix safety
    Safe. A standalone update is rewritten out of place (`x = x + y`, a new tensor that keeps the graph);
    an update of a loop variable over parameters (`for p in params: p.add_(...)`) is wrapped in
    `with torch.no_grad():` instead, since rebinding the loop variable would change nothing.
    """
    valid = (
        """
        import torch

        w = torch.randn(3, requires_grad=True)
        with torch.no_grad():
            w.mul_(0.1)
        loss = (w * 2).sum()
        loss.backward()
        with torch.no_grad():
            w -= 0.1 * w.grad
        """,
        """
        import torch

        x = torch.randn(3, requires_grad=True)
        y = x.clone()
        y.add_(2)
        y.sum().backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch


            class Scratch:
                def __init__(self, n):
                    self.W = torch.randn(n, 1) * 0.01
                    self.W.requires_grad_()

                def params(self):
                    return [self.W]

                def step(self):
                    for param in self.params():
                        param -= 0.1 * param.grad  # expect: GT120


            model = Scratch(4)
            (torch.randn(8, 4) @ model.W).pow(2).mean().backward()
            model.step()
            """,
            fixed="""
            import torch


            class Scratch:
                def __init__(self, n):
                    self.W = torch.randn(n, 1) * 0.01
                    self.W.requires_grad_()

                def params(self):
                    return [self.W]

                def step(self):
                    for param in self.params():
                        with torch.no_grad():
                            param -= 0.1 * param.grad  # expect: GT120


            model = Scratch(4)
            (torch.randn(8, 4) @ model.W).pow(2).mean().backward()
            model.step()
            """,
            truth=Truth(raises=("RuntimeError", "leaf Variable that requires grad")),
        ),
        Invalid(
            """
            import torch

            w = torch.randn(3, requires_grad=True)
            w.add_(torch.ones(3))  # expect: GT120
            loss = (w * 2).sum()
            loss.backward()
            """,
            fixed="""
            import torch

            w = torch.randn(3, requires_grad=True)
            w = w + torch.ones(3)  # expect: GT120
            loss = (w * 2).sum()
            loss.backward()
            """,
            truth=Truth(raises=("RuntimeError", "a leaf Variable that requires grad is being used in an in-place operation")),
        ),
        Invalid(
            """
            import torch

            W1 = torch.randn(4, 3, requires_grad=True)
            b1 = torch.zeros(3, requires_grad=True)
            params = [W1, b1]
            for p in params:
                p.add_(torch.randn_like(p) * 0.01)  # expect: GT120
            loss = (torch.randn(2, 4) @ W1 + b1).sum()
            loss.backward()
            """,
            fixed="""
            import torch

            W1 = torch.randn(4, 3, requires_grad=True)
            b1 = torch.zeros(3, requires_grad=True)
            params = [W1, b1]
            for p in params:
                with torch.no_grad():
                    p.add_(torch.randn_like(p) * 0.01)  # expect: GT120
            loss = (torch.randn(2, 4) @ W1 + b1).sum()
            loss.backward()
            """,
            truth=Truth(raises=("RuntimeError", "a leaf Variable that requires grad is being used in an in-place operation")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            def fill_sinusoids(E):
                E[:, 0::2] = torch.sin(torch.arange(8.0)).unsqueeze(1).expand(8, 2)  # expect: GT120
                E.detach_()


            class Embeddings(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.position_embeddings = nn.Embedding(8, 4)
                    fill_sinusoids(self.position_embeddings.weight)

                def forward(self, ids):
                    return self.position_embeddings(ids)


            model = Embeddings()
            """,
            truth=Truth(raises=("RuntimeError", "leaf Variable that requires grad")),
        ),
    )

    def check(self, ctx):
        for event in ctx.torch.flow.inplace:
            if event.module.path != ctx.path or event.grad_off:
                continue
            target = event.target
            if not (target.leaf and target.srcs) or switched_off_before(ctx.torch.flow.freezes, event):
                continue
            fix = out_of_place_fix(ctx, event.node, event.stmt, event.var)
            ctx.report(
                event.node,
                f"`{event.var}` is a leaf that requires grad: `{event.op}` on it raises RuntimeError.",
                fix=fix,
            )
        return ()
