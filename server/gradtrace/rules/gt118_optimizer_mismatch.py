import ast

from gradtrace.analysis.core.values import display, overlaps
from gradtrace.rules._torch_cut import names_phrase
from gradtrace.rules.base import Invalid, Rule, Truth


def _shared_function_params(ctx, a: ast.AST, b: ast.AST) -> set[str]:
    """Parameter names of the innermost function that contains both nodes (empty when there is none)."""
    best = None
    for fn in ctx.source.nodes(ast.FunctionDef, ast.AsyncFunctionDef):
        end = fn.end_lineno or fn.lineno
        if all(fn.lineno <= n.lineno <= end for n in (a, b)) and (best is None or fn.lineno > best.lineno):
            best = fn
    if best is None:
        return set()
    args = best.args
    return {x.arg for x in args.posonlyargs + args.args + args.kwonlyargs} - {"self", "cls"}


class OptimizerMismatch(Rule):
    code = "GT118"
    name = "optimizer-mismatch"
    summary = "An optimizer steps parameters the loss before it never reaches, or was built before the model changed."
    docs = """
    ## What it does
    Finds an optimizer whose `step()` follows a `backward()` of a loss that reaches none of the
    parameters it was built with (e.g. the critic's optimizer built over the generator), and
    submodules replaced after the optimizer was built (`model.fc = nn.Linear(...)` after
    `Adam(model.parameters())`).

    ## Why is this bad?
    The parameters that the loss does reach accumulate gradients that no optimizer ever applies:
    they never train. The optimizer that steps moves other parameters on stale or zero gradients.
    A layer replaced after the optimizer was built is not in any param group at all: its new
    parameters get gradients but never change.

    ## Example
    ```python
    g_opt = torch.optim.Adam(generator.parameters())
    c_opt = torch.optim.Adam(generator.parameters())
    ```

    ## Use instead
    ```python
    g_opt = torch.optim.Adam(generator.parameters())
    c_opt = torch.optim.Adam(critic.parameters())
    ```

    ## Fix safety
    No automatic fix: build each optimizer from the model its loss trains, after any model surgery.
    """
    valid = (
        """
        import torch
        import torch.nn as nn

        gen, critic = nn.Linear(2, 2), nn.Linear(2, 1)
        g_opt = torch.optim.Adam(gen.parameters())
        c_opt = torch.optim.Adam(critic.parameters())
        z = torch.randn(4, 2)
        c_loss = critic(gen(z).detach()).mean()
        c_opt.zero_grad()
        c_loss.backward()
        c_opt.step()
        g_loss = -critic(gen(z)).mean()
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn

            gen, critic = nn.Linear(2, 2), nn.Linear(2, 1)
            g_opt = torch.optim.Adam(gen.parameters())
            c_opt = torch.optim.Adam(gen.parameters())  # expect: GT118
            z = torch.randn(4, 2)
            c_loss = critic(gen(z).detach()).mean()
            c_opt.zero_grad()
            c_loss.backward()
            c_opt.step()
            before = critic.weight.clone()
            """,
            truth=Truth(grads={"torch.equal(before, critic.weight)": "true"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn

            model = nn.Linear(4, 2)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            model = nn.Linear(4, 2)  # expect: GT118
            loss = model(torch.randn(3, 4)).sum()
            loss.backward()
            opt.step()
            in_opt = any(p is model.weight for g in opt.param_groups for p in g["params"])
            """,
            truth=Truth(grads={"not in_opt": "true"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn

            model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            model.head = nn.Linear(4, 2)  # expect: GT118
            loss = model(torch.randn(3, 4)).sum()
            loss.backward()
            in_opt = any(p is model.head.weight for g in opt.param_groups for p in g["params"])
            """,
            truth=Truth(grads={"not in_opt": "true"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            def fit(teacher, student, x, y):
                optimizer = torch.optim.SGD(teacher.parameters(), lr=0.1)  # expect: GT118
                before = student.weight.clone()
                optimizer.zero_grad()
                loss = ((student(x) - y) ** 2).mean()
                loss.backward()
                optimizer.step()
                return before


            student = nn.Linear(3, 1)
            before = fit(nn.Linear(3, 1), student, torch.randn(8, 3), torch.randn(8, 1))
            """,
            truth=Truth(grads={"torch.equal(before, student.weight)": "true"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.body = nn.Linear(4, 8)
                    self.head = nn.Linear(8, 10)

                def reset_head(self, n):
                    self.head = nn.Linear(8, n)  # expect: GT118

                def forward(self, x):
                    return self.head(self.body(x))


            def make_optimizer(model):
                return torch.optim.SGD(model.parameters(), lr=0.1)


            model = Net()
            opt = make_optimizer(model)
            model.reset_head(3)
            model(torch.randn(5, 4)).sum().backward()
            opt.step()
            in_opt = any(p is model.head.weight for g in opt.param_groups for p in g["params"])
            """,
            truth=Truth(grads={"not in_opt": "true"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.body = nn.Linear(4, 8)
                    self.head = nn.Linear(8, 10)

                def reset_classifier(self, n):
                    self.head = nn.Linear(8, n)  # expect: GT118

                def forward(self, x):
                    return self.head(self.body(x))


            class Trainer:
                def __init__(self, model):
                    self.model = model
                    self.optimizer = self.configure_optimizers()

                def configure_optimizers(self):
                    return torch.optim.AdamW(self.model.parameters(), lr=1e-3)

                def step(self, x):
                    self.optimizer.zero_grad()
                    self.model(x).sum().backward()
                    self.optimizer.step()


            model = Net()
            trainer = Trainer(model)
            model.reset_classifier(3)
            trainer.step(torch.randn(5, 4))
            in_opt = any(p is model.head.weight for g in trainer.optimizer.param_groups for p in g["params"])
            """,
            truth=Truth(grads={"not in_opt": "true"}),
        ),
    )

    def check(self, ctx):
        flow = ctx.torch.flow
        reported = set()
        for step in flow.steps:
            sink = step.last_sink
            opt_value = step.optimizer
            optimizer = opt_value.ref
            if sink is None or optimizer is None or step.module.path != ctx.path:
                continue
            coverage = optimizer.coverage
            if optimizer is None or not optimizer.known or optimizer.module.path != ctx.path:
                continue
            reached = {s for s in sink.value.srcs if not s.startswith("<")}
            if not reached or any(overlaps(r, c) for r in reached for c in coverage.srcs):
                continue
            # Only compare names of objects this file creates: a function's parameters and `self.`
            # attributes are named per scope, so `model` there need not be `model` here.
            # The parameters of the one function that builds the optimizer and steps it are named in one
            # scope too (`def distill(teacher, student)`).
            concrete = ("module", "leaf")
            scope_params = _shared_function_params(ctx, optimizer.node, step.node)
            if any((flow.source_kind.get(s.split(".")[0]) not in concrete or s.startswith("self."))
                   and s.split(".")[0] not in scope_params for s in reached | set(coverage.srcs)):
                continue
            if id(optimizer) in reported:
                continue
            reported.add(id(optimizer))
            name = optimizer.var or "this optimizer"
            sink_line = ctx.span(sink.node).line
            ctx.report(optimizer.node,
                       f"`{name}` holds {names_phrase(sorted(coverage.srcs))}, but its loss on line {sink_line} "
                       f"reaches only {names_phrase(sorted(reached))}, which never {'trains' if len(reached) == 1 else 'train'}.",
                       related=[ctx.related(sink.node, "the backward pass this optimizer steps after"),
                                ctx.related(step.node, "the step")],
                       data={"lost": [display(s) for s in sorted(reached)]})
        for surgery in flow.surgeries:
            if surgery.module.path != ctx.path:
                continue
            if not _left_out(flow, surgery):
                continue
            line = ctx.span(surgery.optimizer.node).line
            what = "model" if "." not in surgery.target else "layer"
            if surgery.parameter:
                what = "parameter"
            consequence = f"the new {what} never trains."
            ctx.report(surgery.node, f"`{surgery.target}` is replaced after the optimizer on line {line} was built: "
                       + consequence,
                       related=[ctx.related(surgery.optimizer.node, "optimizer built here")])
        return ()


def _left_out(flow, surgery) -> bool:
    """Does the replaced part really train without an optimizer? The old one is stepped again, or a later
    loss reaches the new part while no optimizer built after the replacement holds it."""
    if any(step.seq > surgery.seq and step.optimizer.ref is not None and step.optimizer.ref.node is
           surgery.optimizer.node for step in flow.steps):
        return True
    target = surgery.target
    if any(o.seq > surgery.seq and any(overlaps(target, c) for c in o.coverage.srcs) for o in flow.optimizers):
        return False  # built again over the new one
    return any(s.seq > surgery.seq and any(overlaps(target, r) for r in s.value.srcs) for s in flow.sinks)
