import ast

from gradtrace.analysis.core.values import display
from gradtrace.analysis.core.values import expr_text as _text
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

    The same holds for state a module keeps on itself: a `forward` (or another method) that reads
    `self.hidden` into its computation and stores the result back (`self.hidden = self.cell(x, self.hidden)`),
    called once per training step with nothing in the loop that rebinds or detaches it (`model.hidden = ...`,
    `model.hidden.detach_()`, a `reset` method that does). With `backward(retain_graph=True)` the error
    moves: after `optimizer.step()` has changed the weights in place, the next `backward()` raises "one of the
    variables needed for gradient computation has been modified by an inplace operation".

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

    A graph built once before the loop and differentiated in it (`out = net(x)` above the loop, `loss` made
    from `out` inside) fails the same way on the loop's second pass; with `retain_graph=True` the second
    pass raises once an optimizer step has changed the weights that graph saved.

    For state kept on the module, store it detached (`self.hidden = h.detach()`) or detach it at the start
    of each step.

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
        """
        import torch
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.cell = nn.GRUCell(3, 4)
                self.head = nn.Linear(4, 1)
                self.hidden = torch.zeros(2, 4)

            def reset(self):
                self.hidden = torch.zeros(2, 4)

            def forward(self, x):
                self.hidden = self.cell(x, self.hidden)
                return self.head(self.hidden)


        model = Net()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(3):
            model.reset()
            loss = model(torch.randn(2, 3)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        """,
        """
        import torch
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = nn.GRU(3, 4, batch_first=True)
                self.head = nn.Linear(4, 1)
                self.hidden = torch.zeros(1, 2, 4)

            def forward(self, x):
                out, h = self.rnn(x, self.hidden)
                self.hidden = h.detach()
                return self.head(out)


        model = Net()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(3):
            loss = model(torch.randn(2, 5, 3)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        """,
        """
        import torch
        import torch.nn as nn

        encoder = nn.Linear(4, 8)
        head = nn.Linear(8, 1)
        features = encoder(torch.randn(16, 4)).detach()
        opt = torch.optim.SGD(head.parameters(), lr=0.1)
        for step in range(3):
            loss = head(features).pow(2).mean()
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
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.cell = nn.GRUCell(3, 4)
                    self.head = nn.Linear(4, 1)
                    self.hidden = torch.zeros(2, 4)

                def forward(self, x):
                    self.hidden = self.cell(x, self.hidden)  # expect: GT128
                    return self.head(self.hidden)


            model = Net()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for step in range(3):
                loss = model(torch.randn(2, 3)).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            """,
            truth=Truth(raises=("RuntimeError", "Trying to backward through the graph a second time")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.cell = nn.LSTMCell(3, 4)
                    self.head = nn.Linear(4, 1)
                    self.state = (torch.zeros(2, 4), torch.zeros(2, 4))

                def forward(self, x):
                    self.state = self.cell(x, self.state)  # expect: GT128
                    return self.head(self.state[0])


            model = Net()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for step in range(3):
                loss = model(torch.randn(2, 3)).pow(2).mean()
                opt.zero_grad()
                loss.backward(retain_graph=True)
                opt.step()
            """,
            truth=Truth(raises=("RuntimeError", "modified by an inplace operation")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn

            encoder = nn.Linear(5, 8)
            head = nn.Linear(8, 3)
            opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-3)
            out = head(torch.relu(encoder(torch.randn(3, 5))))  # expect: GT128
            for i in range(3):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(out, torch.tensor([1, 2, 0]))
                loss.backward(retain_graph=True)
                opt.step()
            """,
            truth=Truth(raises=("RuntimeError", "modified by an inplace operation")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn

            encoder = nn.Linear(4, 8)
            head = nn.Linear(8, 1)
            features = encoder(torch.randn(16, 4))  # expect: GT128
            opt = torch.optim.SGD(head.parameters(), lr=0.1)
            for step in range(3):
                loss = head(features).pow(2).mean()
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
        self.check_module_state(ctx)
        self.check_built_before_loop(ctx)
        return ()

    @staticmethod
    def check_built_before_loop(ctx):
        """A training loop whose `backward()` goes through a graph built once, before the loop (`out = net(x)` above
        it): the second pass raises."""
        reported = set()
        for event in ctx.torch.flow.graphs_built_before_loop:
            if event.module.path != ctx.path or id(event.node) in reported \
                    or rebound_after(ctx.source.semantic, event.node, event.sink.label):
                continue  # `loss = 0` after its backward: what the next pass adds to is a new graph
            reported.add(id(event.node))
            built = _built_just_before(ctx.source.semantic, event.loop, event.names)
            if event.step is None:
                tail = "the second `backward()` raises (graph already freed)."
            else:
                step = f"`{_text(event.step.node.func)}()`" if isinstance(event.step.node, ast.Call) else "the step"
                tail = f"after {step}, the second `backward()` raises."
            if built is not None:  # where the graph is built: the forward pass to move into the loop
                ctx.report(built, f"`{event.sink.label}` reuses this graph on every pass of the loop: {tail}",
                           related=[ctx.related(event.node, "the backward() that goes through it again")],
                           data={"lost": [display(s) for s in sorted(event.srcs)]})
                continue
            ctx.report(event.node, f"`{event.sink.label}` reuses a graph built before the loop: {tail}",
                       data={"lost": [display(s) for s in sorted(event.srcs)]})

    @staticmethod
    def check_module_state(ctx):
        """A module keeps its recurrent state on `self` with its history (`self.hidden = self.cell(x, self.hidden)`)
        and a training loop calls it once per step without resetting or detaching that state."""
        reported = set()
        for event in ctx.torch.flow.state_carried:
            loop = event.loop
            if loop is None or event.loop_module.path != ctx.path or id(event.node) in reported:
                continue
            calls = [n for n in ast.walk(loop) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
            backwards = [c for c in calls if c.func.attr == "backward"]
            if not backwards or _state_reset(loop, event.attr, event.owner):
                continue
            retained = all(not _backward_without_retain(c) for c in backwards)
            if retained and not any(c.func.attr == "step" for c in calls):
                continue  # every backward keeps its graph and nothing changes the weights in place: no error
            where = event.node if event.module.path == ctx.path else event.call
            label = f"`self.{event.attr}`" if where is event.node else f"`{event.owner.name}`'s `{event.attr}`"
            if retained:
                tail = "after `step()`, its `backward()` raises."
            else:
                tail = "its `backward()` raises (graph already freed)."
            reported.add(id(event.node))
            ctx.report(where, f"{label} keeps this step's graph for the next call: {tail}")


def _built_just_before(semantic, loop, names: tuple):
    """The statement right before the loop, in the same block, that binds one of `names` (`out = net(x)` above
    `for ...:`), when there is one."""
    if loop is None or not names:
        return None
    parent = semantic.parent(loop)
    for field in ("body", "orelse", "finalbody"):
        block = getattr(parent, field, None)
        if isinstance(block, list) and loop in block:
            for stmt in reversed(block[:block.index(loop)]):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(
                    stmt, (ast.AnnAssign, ast.AugAssign)) else []
                if any(isinstance(n, ast.Name) and n.id in names for t in targets for n in ast.walk(t)):
                    return stmt
    return None


RESETS = {"detach_", "zero_", "fill_", "copy_"}


def _state_reset(loop: ast.stmt, attr: str, owner) -> bool:
    """Does the loop rebind or detach the state between steps: `model.hidden = ...`, `model.hidden.detach_()`, or a
    call of a method that does (`model.reset_hidden()`, `net.detach_hidden()` calling a sub-module's)?"""
    resetting = _resetting_methods(attr, owner)
    for node in ast.walk(loop):
        if isinstance(node, ast.Attribute) and node.attr == attr and isinstance(node.ctx, ast.Store):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            if node.func.attr in RESETS and isinstance(target, ast.Attribute) and target.attr == attr:
                return True
            if node.func.attr in resetting:
                return True
    return False


def _resetting_methods(attr: str, owner) -> set:
    """Names of the methods, in the module that defines `owner` and in the files it was given from, that rebind or
    detach `self.<attr>` (or call one that does on a sub-module)."""
    methods = {}
    for info in owner.module.classes.values():
        for name, node in info.methods.items():
            methods.setdefault(name, []).append(node)
    direct, calls = set(), {}
    for name, nodes in methods.items():
        for node in nodes:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Attribute) and sub.attr == attr and (
                        isinstance(sub.ctx, ast.Store) and name not in ("forward", "__init__", "__call__")):
                    direct.add(name)
                if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute):
                    target = sub.func.value
                    if sub.func.attr in RESETS and isinstance(target, ast.Attribute) and target.attr == attr:
                        direct.add(name)
                    calls.setdefault(name, set()).add(sub.func.attr)
    found = set(direct)
    changed = True
    while changed:
        changed = False
        for name, called in calls.items():
            if name not in found and name not in ("forward", "__call__") and called & found:
                found.add(name)
                changed = True
    return found
