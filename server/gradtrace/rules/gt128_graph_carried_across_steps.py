import ast

from gradtrace.analysis.source import parent_map
from gradtrace.rules.base import Invalid, Rule, Truth

HARMLESS_CALLS = {"detach", "detach_", "item", "tolist", "print", "float", "int", "len", "repackage_hidden",
                  "numpy", "append", "format", "isinstance"}


def _statements_in_order(body: list[ast.stmt]):
    for stmt in body:
        yield stmt
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list) and not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield from _statements_in_order(inner)
        for handler in getattr(stmt, "handlers", []):
            yield from _statements_in_order(handler.body)


def _own_nodes(stmt: ast.stmt):
    """Nodes of the statement itself (not of the blocks nested in it)."""
    if isinstance(stmt, (ast.If, ast.While)):
        return ast.walk(stmt.test)
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        return ast.walk(stmt.iter)
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return (n for item in stmt.items for n in ast.walk(item.context_expr))
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Try)):
        return iter(())
    return ast.walk(stmt)


def _reads_into_graph(stmt: ast.stmt, name: str) -> ast.Name | None:
    """A read of `name` in `stmt` that can enter a new graph (not under detach/item/print...)."""
    parents = None
    for node in _own_nodes(stmt):
        if not (isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load)):
            continue
        if parents is None:
            parents = parent_map(stmt)
        current, harmless = node, False
        while current is not None and current is not stmt:
            parent = parents.get(id(current))
            if isinstance(parent, ast.Call):
                func = parent.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called in HARMLESS_CALLS:
                    harmless = True
                    break
            if isinstance(parent, ast.Attribute) and parent.attr in HARMLESS_CALLS:
                harmless = True
                break
            if isinstance(parent, (ast.Compare, ast.JoinedStr)):
                harmless = True
                break
            if isinstance(parent, ast.comprehension) and parent.iter is current:
                owner = parents.get(id(parent))  # `tuple(s.detach() for s in state)`
                elt = getattr(owner, "elt", None)
                if elt is not None and any(isinstance(n, ast.Attribute) and n.attr in ("detach", "detach_")
                                           for n in ast.walk(elt)):
                    harmless = True
                    break
            current = parent
        if not harmless and isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Return)):
            return node
    return None


def _writes(stmt: ast.stmt, name: str) -> bool:
    targets = []
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        targets = [stmt.target]
    elif isinstance(stmt, (ast.For, ast.AsyncFor)):
        targets = [stmt.target]
    return any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t))


def _backward_without_retain(stmt: ast.stmt) -> bool:
    for node in _own_nodes(stmt):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "backward":
            if not any(k.arg == "retain_graph" for k in node.keywords):
                return True
    return False


class GraphCarriedAcrossSteps(Rule):
    code = "GT128"
    name = "graph-carried-across-steps"
    summary = "A tensor carried from one training step to the next keeps the freed graph: the next backward raises."
    severity = "error"
    docs = """
    ## What it does
    Finds a value computed with gradient in one iteration of a training loop (a recurrent hidden state,
    a running average, a previous output) and used, without `.detach()`, to compute the next
    iteration's loss, when every iteration calls `backward()`.

    ## Why is this bad?
    `backward()` frees the graph it went through. The carried value still points into last iteration's
    graph, so the next `backward()` raises "Trying to backward through the graph a second time".
    `retain_graph=True` silences it but keeps every iteration's graph alive and backpropagates through
    all of history.

    ## Example
    ```python
    for x, y in batches:
        out, h = rnn(x, h)
        loss = criterion(out, y)
        loss.backward()
    ```

    ## Use instead
    ```python
    for x, y in batches:
        h = h.detach()            # truncated backpropagation through time
        out, h = rnn(x, h)
        loss = criterion(out, y)
        loss.backward()
    ```

    ## Fix safety
    No automatic fix: decide where the history should be cut (usually `h = h.detach()` at the start of
    the step).
    """
    valid = (
        """
        import torch
        import torch.nn as nn

        rnn = nn.RNN(3, 4, batch_first=True)
        opt = torch.optim.SGD(rnn.parameters(), lr=0.1)
        h = torch.zeros(1, 2, 4)
        for step in range(3):
            h = h.detach()
            out, h = rnn(torch.randn(2, 5, 3), h)
            loss = out.pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn

            rnn = nn.RNN(3, 4, batch_first=True)
            opt = torch.optim.SGD(rnn.parameters(), lr=0.1)
            h = torch.zeros(1, 2, 4)
            for step in range(3):
                out, h = rnn(torch.randn(2, 5, 3), h)  # expect: GT128
                loss = out.pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            """,
            truth=Truth(raises=("RuntimeError", "Trying to backward through the graph a second time")),
        ),
    )

    def check(self, ctx):
        for event in ctx.torch.flow.carried:
            loop, module, carried = event.node, event.module, event.names
            if module.path != ctx.path:
                continue
            ordered = list(_statements_in_order(loop.body))
            if not any(_backward_without_retain(s) for s in ordered):
                continue
            for name in carried:
                for index, stmt in enumerate(ordered):
                    read = _reads_into_graph(stmt, name)
                    if read is not None:
                        if any(_backward_without_retain(s) for s in ordered[index:]):
                            ctx.report(read, f"`{name}` still holds the previous iteration's graph, which "
                                       "`backward()` has freed: the next `backward()` raises \"Trying to backward "
                                       f"through the graph a second time\". Detach it first (`{name} = {name}.detach()`).")
                        break
                    if _writes(stmt, name):
                        break
        return ()
