import ast

from gradtrace.rules.base import Invalid, Rule, Truth

FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
# Uses of an optimizer that neither step it nor hand it to code that might.
SAFE_ATTRS = {"zero_grad", "param_groups", "state_dict", "load_state_dict", "add_param_group", "state", "defaults"}
# A call in the training function whose name says it may step the optimizer behind our back.
STEP_WORDS = ("step", "optim", "update", "apply_grad")


def is_optimizer_call(ctx, node) -> bool:
    if not isinstance(node, ast.Call):
        return False
    qn = ctx.names.qualname(node.func) or ""
    short = qn.split(".")[-1]
    return qn.startswith("torch.optim.") and qn.count(".") == 2 and short[:1].isupper() and short != "Optimizer"


def is_scheduler_call(ctx, node) -> bool:
    if not isinstance(node, ast.Call):
        return False
    qn = ctx.names.qualname(node.func) or ""
    return qn.startswith("torch.optim.lr_scheduler.") and qn.split(".")[-1][:1].isupper()


def enclosing_function(parents, node):
    while True:
        node = parents.get(id(node))
        if node is None or isinstance(node, (*FUNCTIONS, ast.Module)):
            return node


def handle_of(node) -> tuple[str, str] | None:
    """("name", id) for `opt`, ("attr", name) for `self.optimizer` / `trainer.opt`."""
    if isinstance(node, ast.Name):
        return ("name", node.id)
    if isinstance(node, ast.Attribute):
        return ("attr", node.attr)
    return None


class OptimizerNeverSteps(Rule):
    code = "GT137"
    name = "optimizer-never-steps"
    summary = "An optimizer is zeroed and `backward()` runs, but its `step()` is never called: nothing trains."
    docs = """
    ## What it does
    Finds an optimizer built in the file (`opt = torch.optim.Adam(...)`, `self.optimizer = ...`, or
    returned by a same-file factory such as `configure_optimizers()` and unpacked into an attribute)
    whose `zero_grad()` is called in a function that also runs `backward()`, while `step()` is never
    called on it anywhere — often `scheduler.step()` was written in its place. Optimizers handed to
    anything else (`scaler.step(opt)`, `accelerator.prepare(...)`, a helper, a wrapper class,
    `return opt`) or reached through another name are left alone: those may step it.

    ## Why is this bad?
    `backward()` fills the parameters' `.grad`, `zero_grad()` clears it again, and nothing ever
    applies it: the parameters keep their initial values while the loop runs and logs a loss that
    never improves (beyond what batch norm statistics change). `scheduler.step()` only changes the
    learning rate; PyTorch merely warns that it was called before `optimizer.step()`.

    ## Example
    ```python
    optimizer.zero_grad()
    loss.backward()
    scheduler.step()
    ```

    ## Use instead
    ```python
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    ```

    ## Fix safety
    No automatic fix: where the step belongs (every iteration, after gradient accumulation, through a
    gradient scaler) depends on the loop.
    """
    valid = (
        """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10)
        for _ in range(3):
            opt.zero_grad()
            loss = model(torch.randn(8, 4)).pow(2).mean()
            loss.backward()
            opt.step()
            sched.step()
        """,
        """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 1)
        opt = torch.optim.Adam(model.parameters())
        scaler = torch.amp.GradScaler("cpu")
        for _ in range(3):
            opt.zero_grad()
            loss = model(torch.randn(8, 4)).pow(2).mean()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        """,
        """
        import torch
        import torch.nn as nn


        class Trainer:
            def __init__(self, model):
                self.model = model
                self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

            def train_step(self, x):
                self.optimizer.zero_grad()
                loss = self.model(x).sum()
                loss.backward()
                self.optimizer_step()

            def optimizer_step(self):
                self.optimizer.step()


        class LitModel(nn.Module):
            def configure_optimizers(self):
                optimizer = torch.optim.Adam(self.parameters())
                scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
                return [optimizer], [scheduler]
        """,
        """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        step = opt.step
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(8, 4)).sum().backward()
            step()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn

            model = nn.Linear(4, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)  # expect: GT137
            before = model.weight.clone()
            for _ in range(5):
                opt.zero_grad()
                loss = (model(torch.randn(8, 4)) - 1).pow(2).mean()
                loss.backward()
            unchanged = torch.equal(before, model.weight)
            """,
            truth=Truth(grads={"unchanged": "true", "model.weight": "ok"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            import torch.nn.functional as F


            class Regressor(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1))

                def forward(self, x):
                    return self.net(x)

                def configure_optimizers(self):
                    optimizer = torch.optim.Adam(self.parameters(), lr=1e-2)
                    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
                    return optimizer, scheduler


            class Fitter:
                def __init__(self, model):
                    self.model = model
                    self.optimizer, self.scheduler = model.configure_optimizers()

                def fit_batch(self, x, y):
                    self.optimizer.zero_grad()
                    loss = F.mse_loss(self.model(x), y)
                    loss.backward()
                    self.scheduler.step()  # expect: GT137
                    return loss.item()


            model = Regressor()
            fitter = Fitter(model)
            before = model.net[0].weight.clone()
            for _ in range(4):
                fitter.fit_batch(torch.randn(16, 3), torch.randn(16, 1))
            unchanged = torch.equal(before, model.net[0].weight)
            """,
            truth=Truth(grads={"unchanged": "true"}),
        ),
    )

    def check(self, ctx):
        text = ctx.source.text
        if "zero_grad" not in text or "backward" not in text or "torch" not in text:
            return ()
        # Fast path: the value flow already saw `.step()` on every optimizer this file builds.
        flow = ctx.torch.flow
        stepped = {id(s.optimizer.ref.node) for s in flow.steps if s.optimizer.ref is not None}
        mine = [o for o in flow.optimizers if o.module.path == ctx.path]
        built = {id(o.node) for o in mine}
        if mine and all(id(o.node) in stepped for o in mine) \
                and all(id(c) in built for c in ctx.source.nodes(ast.Call) if is_optimizer_call(ctx, c)):
            return ()
        parents = ctx.source.parents
        made = self.factories(ctx, parents)
        factories = set(made)
        known = {f.name for f in ctx.source.nodes(ast.FunctionDef, ast.AsyncFunctionDef)}
        known |= {n.attr for n in ctx.source.nodes(ast.Attribute) if isinstance(n.ctx, ast.Store)}
        bindings = self.bindings(ctx, parents, made)
        for handle, (construction, scheduler_sibling) in bindings.items():
            found = self.training_site(ctx, parents, handle)
            if found is None:
                continue
            zero, owner, backward = found
            schedulers = self.scheduler_handles(ctx)
            if scheduler_sibling is not None:
                schedulers.add(scheduler_sibling)
            sched_step = None
            suspicious = False
            for call in self.calls_in(ctx, parents, owner):
                func = call.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                receiver = handle_of(func.value) if isinstance(func, ast.Attribute) else None
                if name == "step" and receiver and (receiver in schedulers or "sched" in receiver[1].lower()):
                    if sched_step is None and (call.lineno, call.col_offset) > (backward.lineno, backward.col_offset):
                        sched_step = call
                    continue
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self" \
                        and name not in known:
                    suspicious = True  # a hook a subclass elsewhere may define (and step in)
                if name != "backward" and name not in factories and any(w in name.lower() for w in STEP_WORDS):
                    suspicious = True
            if suspicious:
                continue
            shown = self.shown(ctx, zero)
            built = ctx.span(construction).line
            loss = ctx.source.segment(backward.func.value)
            loss = loss if "\n" not in loss and len(loss) <= 30 else "..."
            if sched_step is not None:
                sched = ctx.source.segment(sched_step.func.value)
                ctx.report(sched_step,
                           f"`{sched}.step()` only changes the learning rate: `{shown}` (built on line {built}) is "
                           f"zeroed and `{loss}.backward()` runs, but `{shown}.step()` is never called, so the "
                           "parameters get gradients and never change.",
                           related=[ctx.related(construction, "the optimizer that is never stepped"),
                                    ctx.related(backward, "the backward pass")])
            else:
                ctx.report(construction,
                           f"`{shown}.step()` is never called: `{shown}` is zeroed (line {ctx.span(zero).line}) and "
                           f"`{loss}.backward()` runs (line {ctx.span(backward).line}), so the parameters get "
                           "gradients and never change.",
                           related=[ctx.related(backward, "the backward pass the step should follow")])
        return ()

    @staticmethod
    def shown(ctx, zero: ast.Call) -> str:
        return ctx.source.segment(zero.func.value)

    @staticmethod
    def calls_in(ctx, parents, owner):
        return [c for c in ctx.source.nodes(ast.Call) if enclosing_function(parents, c) is owner]

    def scheduler_handles(self, ctx) -> set:
        found = set()
        for stmt in ctx.source.nodes(ast.Assign):
            if len(stmt.targets) == 1 and is_scheduler_call(ctx, stmt.value):
                h = handle_of(stmt.targets[0])
                if h:
                    found.add(h)
        return found

    def bindings(self, ctx, parents, factories: dict) -> dict:
        """Handles bound only to fresh optimizers: handle -> (construction node, sibling scheduler handle)."""
        result: dict = {}
        rejected: set = set()
        for node in ctx.source.nodes(ast.Name, ast.Attribute):
            if isinstance(node.ctx, ast.Load):
                continue
            handle = handle_of(node)
            if handle is None or handle in rejected:
                continue
            stmt = parents.get(id(node))
            found = None
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and stmt.targets[0] is node:
                if is_optimizer_call(ctx, stmt.value):
                    found = (stmt.value, None)
                elif isinstance(stmt.value, ast.Call):
                    made = factories.get(self.callee(stmt.value))
                    if made and isinstance(made[0], ast.Call):
                        found = (made[0], None)
            elif isinstance(stmt, ast.Tuple):
                assign = parents.get(id(stmt))
                if isinstance(assign, ast.Assign) and len(assign.targets) == 1 and assign.targets[0] is stmt and \
                        isinstance(assign.value, ast.Call):
                    made = factories.get(self.callee(assign.value))
                    index = stmt.elts.index(node)
                    if made and isinstance(made, tuple) and len(made) == len(stmt.elts) and \
                            isinstance(made[index], ast.Call):
                        sibling = next((handle_of(stmt.elts[i]) for i, m in enumerate(made)
                                        if m == "scheduler"), None)
                        found = (made[index], sibling)
            if found is None or (handle in result and result[handle][0] is not found[0]):
                rejected.add(handle)
                result.pop(handle, None)
                continue
            result[handle] = found
        # function parameters and loop variables with the same name make the handle ambiguous
        for arg in ctx.source.nodes(ast.arg):
            result.pop(("name", arg.arg), None)
        for const in ctx.source.nodes(ast.Constant):
            if isinstance(const.value, str):
                result.pop(("attr", const.value), None)
                result.pop(("name", const.value), None)
        return {h: v for h, v in result.items() if self.only_safe_uses(ctx, parents, h)}

    @staticmethod
    def callee(call: ast.Call) -> str | None:
        func = call.func
        return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)

    def factories(self, ctx, parents) -> dict:
        """Same-file functions returning fresh optimizers: name -> construction, or a tuple of
        constructions / "scheduler" / None per returned element."""
        found: dict = {}
        seen: dict = {}
        for fn in ctx.source.nodes(ast.FunctionDef, ast.AsyncFunctionDef):
            seen[fn.name] = seen.get(fn.name, 0) + 1
            returns = [r for r in ast.walk(fn) if isinstance(r, ast.Return)
                       and enclosing_function(parents, r) is fn]
            if len(returns) != 1 or returns[0].value is None:
                continue
            value = returns[0].value
            local = {}
            for stmt in ast.walk(fn):
                if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                    name = stmt.targets[0].id
                    local[name] = stmt.value if name not in local else False

            if isinstance(value, ast.Tuple):
                made = tuple(self.resolve(ctx, parents, fn, local, value, e) for e in value.elts)
                if any(isinstance(m, ast.Call) for m in made):
                    found[fn.name] = made
            else:
                made = self.resolve(ctx, parents, fn, local, value, value)
                if isinstance(made, ast.Call):
                    found[fn.name] = (made,)
        return {name: made for name, made in found.items() if seen.get(name) == 1}

    def resolve(self, ctx, parents, fn, local: dict, returned, expr):
        """A returned expression: the optimizer construction it holds, "scheduler", or None."""
        if is_optimizer_call(ctx, expr):
            return expr
        if isinstance(expr, ast.Name) and local.get(expr.id):
            bound = local[expr.id]
            if is_optimizer_call(ctx, bound) and self.factory_local_safe(ctx, parents, fn, expr.id, returned):
                return bound
            if is_scheduler_call(ctx, bound):
                return "scheduler"
        return None

    @staticmethod
    def factory_local_safe(ctx, parents, fn, name: str, returned) -> bool:
        """Inside the factory the optimizer is only returned or given to a scheduler."""
        for node in ast.walk(fn):
            if not (isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load)):
                continue
            parent = parents.get(id(node))
            if parent is returned or node is returned:
                continue
            if isinstance(parent, ast.keyword):
                parent = parents.get(id(parent))
            if is_scheduler_call(ctx, parent):
                continue
            return False
        return True

    @staticmethod
    def only_safe_uses(ctx, parents, handle) -> bool:
        kind, name = handle
        nodes = ctx.source.nodes(ast.Name) if kind == "name" else ctx.source.nodes(ast.Attribute)
        for node in nodes:
            if (node.id if kind == "name" else node.attr) != name or not isinstance(node.ctx, ast.Load):
                continue
            parent = parents.get(id(node))
            if isinstance(parent, ast.Attribute) and parent.value is node:
                if parent.attr in SAFE_ATTRS:
                    continue
                return False  # .step, or any other use we cannot follow
            if isinstance(parent, ast.keyword):
                parent = parents.get(id(parent))
            if is_scheduler_call(ctx, parent):
                continue
            return False
        return True

    def training_site(self, ctx, parents, handle):
        """(zero_grad call, its function, a backward call there) for the first function that does both."""
        for call in ctx.source.nodes(ast.Call):
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr == "zero_grad" and handle_of(func.value) == handle:
                owner = enclosing_function(parents, call)
                backward = next((c for c in self.calls_in(ctx, parents, owner)
                                 if isinstance(c.func, ast.Attribute) and c.func.attr == "backward"), None)
                if backward is not None:
                    return call, owner, backward
        return None
