import ast

from gradtrace.rules._torch_cut import rebound_after
from gradtrace.rules.base import Invalid, Rule, Truth

HARMLESS_CALLS = {"detach", "detach_", "item", "tolist", "print", "float", "int", "len", "repackage_hidden",
                  "numpy", "append", "format", "isinstance"}


SIMPLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Return)  # statements a read enters a graph in
REBINDS = ("assignment", "annotation", "augmented", "loop")


def _harmless(semantic, read: ast.Name, stmt: ast.stmt) -> bool:
    """The read cannot enter a new graph: under detach/item/print..., in a comparison or an f-string."""
    current = read
    for parent in semantic.ancestors(read):
        if parent is stmt:
            return False
        if isinstance(parent, ast.Call):
            func = parent.func
            if (func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)) in HARMLESS_CALLS:
                return True
        if isinstance(parent, ast.Attribute) and parent.attr in HARMLESS_CALLS:
            return True
        if isinstance(parent, (ast.Compare, ast.JoinedStr)):
            return True
        if isinstance(parent, ast.comprehension) and parent.iter is current:
            elt = getattr(semantic.parent(parent), "elt", None)  # `tuple(s.detach() for s in state)`
            if elt is not None and any(isinstance(n, ast.Attribute) and n.attr in ("detach", "detach_")
                                       for n in ast.walk(elt)):
                return True
        current = parent
    return False


def _first_use(semantic, loop: ast.stmt, name: str):
    """(statement, read) for the first statement of the loop's body that reads `name` into a graph, or
    (statement, None) when one rebinds it first; None when neither happens."""
    scope = semantic.scope_of(loop)
    found = []
    for read in semantic.uses_in(scope, name):
        stmt = semantic.statement_of(read)
        if isinstance(stmt, SIMPLE) and semantic.in_loop(read, loop) and not _harmless(semantic, read, stmt):
            found.append(((stmt.lineno, stmt.col_offset, 0), stmt, read))
    for binding in scope.bindings.get(name, ()):
        stmt = binding.statement
        if binding.kind in REBINDS and semantic.in_loop(stmt, loop):
            found.append(((stmt.lineno, stmt.col_offset, 1), stmt, None))
    return min(found, key=lambda f: f[0], default=None)


def _backward_without_retain(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Attribute) and call.func.attr == "backward" and not any(
        k.arg == "retain_graph" for k in call.keywords)


class GraphCarriedAcrossSteps(Rule):
    code = "GT128"
    name = "graph-carried-across-steps"
    summary = "A tensor carried from one training step to the next keeps the freed graph: the next backward raises."
    severity = "error"
    docs = """
    ## What it does
    Finds a value computed with gradient in one iteration of a training loop (a recurrent hidden state,
    a running average, a previous output) and used, without `.detach()`, to compute the next
    iteration's loss, when every iteration calls `backward()`. Gradient accumulation, where the block that
    calls `backward()` rebinds the value right after it (`loss = 0`), carries no freed graph.

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
        """
        import torch
        import torch.nn as nn

        policy = nn.Linear(4, 2)
        optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
        loss = 0
        for count, obs in enumerate(torch.randn(8, 3, 4), start=1):
            loss = loss + policy(obs).pow(2).mean()
            if count % 4 == 0:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                loss = 0
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
            semantic = ctx.source.semantic
            backwards = [semantic.statement_of(c) for c in semantic.nodes_in(semantic.function_of(loop), ast.Call)
                         if _backward_without_retain(c) and semantic.in_loop(c, loop)]
            for name in carried if backwards else ():
                found = _first_use(semantic, loop, name)
                if found is None or found[2] is None:
                    continue
                _, stmt, read = found
                freeing = [b for b in backwards if not rebound_after(semantic, b, name)]  # `loss = 0` after it: reset
                if any((b.lineno, b.col_offset) >= (stmt.lineno, stmt.col_offset) for b in freeing):
                    ctx.report(read, f"`{name}` carries the previous iteration's freed graph: the next `backward()` raises.")
        return ()
