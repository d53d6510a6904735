import ast
from collections import Counter

from gradtrace.rules.base import Invalid, Rule, Truth

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


def handle_of(node) -> tuple[str, str] | None:
    """("name", id) for `opt`, ("attr", name) for `self.optimizer` / `trainer.opt`: how a scheduler is named."""
    if isinstance(node, ast.Name):
        return ("name", node.id)
    if isinstance(node, ast.Attribute):
        return ("attr", node.attr)
    return None


def holder_of(semantic, node) -> tuple | None:
    """What holds an optimizer: ("name", scope, name) for a variable, ("attr", name) for `x.name` (of any
    object: attributes are told apart by name only)."""
    if isinstance(node, ast.Name):
        binding = semantic.binding_of(node) if not isinstance(node.ctx, ast.Load) else None
        scope = binding.scope if binding is not None else semantic.defining_scope(node)
        return ("name", scope, node.id) if scope is not None else None
    if isinstance(node, ast.Attribute):
        return ("attr", node.attr)
    return None


def callee(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def is_backward(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Attribute) and call.func.attr == "backward"


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
        semantic = ctx.source.semantic
        made = self.factories(ctx)
        known = {f.name for f in ctx.source.nodes(ast.FunctionDef, ast.AsyncFunctionDef)} | set(semantic.attributes)
        scheduler_handles = {handle_of(s.targets[0]) for s in ctx.source.nodes(ast.Assign)
                             if len(s.targets) == 1 and is_scheduler_call(ctx, s.value)}
        for holder, (construction, scheduler_sibling) in self.optimizers(ctx, made).items():
            found = self.training_site(ctx, holder)
            if found is None:
                continue
            zero, owner, backward = found
            schedulers = scheduler_handles | {scheduler_sibling}
            sched_step = None
            suspicious = False
            for call in semantic.nodes_in(owner, ast.Call):
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
                if name != "backward" and name not in made and any(w in name.lower() for w in STEP_WORDS):
                    suspicious = True
            if suspicious:
                continue
            shown = ctx.source.segment(zero.func.value)
            if sched_step is not None:
                sched = ctx.source.segment(sched_step.func.value)
                ctx.report(sched_step,
                           f"`{sched}.step()` only changes the learning rate: `{shown}.step()` is never called.",
                           related=[ctx.related(construction, "the optimizer that is never stepped"),
                                    ctx.related(backward, "the backward pass")])
            else:
                ctx.report(construction,
                           f"`{shown}.step()` is never called: the parameters get gradients but never change.",
                           related=[ctx.related(backward, "the backward pass the step should follow")])
        return ()

    def optimizers(self, ctx, factories: dict) -> dict:
        """Holders bound only to one fresh optimizer and used only in ways that cannot step it:
        holder -> (construction node, the handle of a scheduler made beside it)."""
        semantic = ctx.source.semantic
        found: dict = {}
        for stmt in ctx.source.nodes(ast.Assign):
            value = stmt.value
            if isinstance(value, ast.Call) and (is_optimizer_call(ctx, value) or callee(value) in factories):
                for binding in semantic.made_by(stmt):
                    holder = holder_of(semantic, binding.node)
                    if holder is not None and holder not in found:
                        found[holder] = self.bound_to(ctx, holder, factories)
        strings = {c.value for c in ctx.source.nodes(ast.Constant) if isinstance(c.value, str)}  # getattr(o, "opt")
        return {h: made for h, made in found.items()
                if made is not None and h[-1] not in strings and self.only_safe_uses(ctx, h)}

    def bound_to(self, ctx, holder, factories: dict):
        """(construction, sibling scheduler handle) when every binding of `holder` assigns the same one."""
        semantic = ctx.source.semantic
        bindings = holder[1].bindings[holder[2]] if holder[0] == "name" else semantic.attributes[holder[1]]
        first = None
        for binding in bindings:
            made = self.construction(ctx, binding, factories)
            if made is None or (first is not None and made[0] is not first[0]):
                return None
            first = first or made
        return first

    @staticmethod
    def construction(ctx, binding, factories: dict):
        """The optimizer construction `opt = torch.optim.X(...)`, `opt = make()` or `opt, sched = make()`
        binds, with the handle of a scheduler unpacked beside it."""
        stmt, target = binding.statement, binding.target
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.value, ast.Call)):
            return None
        made = factories.get(callee(stmt.value))
        if target is binding.node:
            if is_optimizer_call(ctx, stmt.value):
                return stmt.value, None
            return (made[0], None) if made and isinstance(made[0], ast.Call) else None
        if not (isinstance(target, ast.Tuple) and made and len(made) == len(target.elts)
                and binding.node in target.elts):
            return None
        index = target.elts.index(binding.node)
        if not isinstance(made[index], ast.Call):
            return None
        return made[index], next((handle_of(target.elts[i]) for i, m in enumerate(made) if m == "scheduler"), None)

    def factories(self, ctx) -> dict:
        """Same-file functions returning fresh optimizers: name -> a tuple of constructions / "scheduler" / None
        per returned element."""
        semantic = ctx.source.semantic
        functions = ctx.source.nodes(ast.FunctionDef, ast.AsyncFunctionDef)
        defined = Counter(fn.name for fn in functions)
        found: dict = {}
        for fn in functions:
            returns = semantic.nodes_in(fn, ast.Return)
            if defined[fn.name] != 1 or len(returns) != 1 or returns[0].value is None:
                continue
            value = returns[0].value
            elements = value.elts if isinstance(value, ast.Tuple) else [value]
            made = tuple(self.returned(ctx, fn, value, e) for e in elements)
            if any(isinstance(m, ast.Call) for m in made):
                found[fn.name] = made
        return found

    def returned(self, ctx, fn, returned, expr):
        """A returned expression: the optimizer construction it holds, "scheduler", or None."""
        if is_optimizer_call(ctx, expr):
            return expr
        semantic = ctx.source.semantic
        binding = semantic.sole_binding(expr) if isinstance(expr, ast.Name) else None
        if binding is None or binding.kind != "assignment" or binding.value is None or binding.scope.node is not fn:
            return None
        if is_optimizer_call(ctx, binding.value) and all(
                self.hands_on_safely(ctx, use, returned) for use in semantic.uses_of(binding)):
            return binding.value
        return "scheduler" if is_scheduler_call(ctx, binding.value) else None

    @staticmethod
    def hands_on_safely(ctx, use: ast.Name, returned) -> bool:
        """Inside the factory the optimizer is only returned or given to a scheduler."""
        parent = ctx.source.semantic.parent(use)
        if parent is returned or use is returned:
            return True
        if isinstance(parent, ast.keyword):
            parent = ctx.source.semantic.parent(parent)
        return is_scheduler_call(ctx, parent)

    @staticmethod
    def only_safe_uses(ctx, holder) -> bool:
        semantic = ctx.source.semantic
        if holder[0] == "name":
            loads = semantic.uses_in(holder[1], holder[2])
        else:
            loads = [n for n in ctx.source.nodes(ast.Attribute) if n.attr == holder[1] and isinstance(n.ctx, ast.Load)]
        for node in loads:
            parent = semantic.parent(node)
            if isinstance(parent, ast.Attribute) and parent.value is node:
                if parent.attr in SAFE_ATTRS:
                    continue
                return False  # .step, or any other use we cannot follow
            if isinstance(parent, ast.keyword):
                parent = semantic.parent(parent)
            if is_scheduler_call(ctx, parent):
                continue
            return False
        return True

    @staticmethod
    def training_site(ctx, holder):
        """(zero_grad call, its function, a backward call there) for the first function that does both."""
        semantic = ctx.source.semantic
        for call in ctx.source.nodes(ast.Call):
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr == "zero_grad" and holder_of(semantic, func.value) == holder:
                owner = semantic.function_of(call)
                backward = next((c for c in semantic.nodes_in(owner, ast.Call) if is_backward(c)), None)
                if backward is not None:
                    return call, owner, backward
        return None
