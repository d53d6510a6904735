import ast

from gradtrace.analysis.core.values import display, overlaps
from gradtrace.analysis.frameworks.common import FROZEN_NAME_HINTS
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
    `Adam(model.parameters())`), and a model the loss trains that no optimizer holds (a classifier head
    built beside the backbone, with the optimizer built over `model.parameters()` alone; also a `self.head` a
    trainer class builds beside its `self.opt` and trains in its own step method), and a frozen part
    unfrozen after an optimizer that kept only the parameters requiring grad was built
    (`Adam(filter(lambda p: p.requires_grad, model.parameters()))`, also handed to a helper that builds
    the optimizer, then `requires_grad = True` at a later epoch).

    ## Why is this bad?
    The parameters that the loss does reach accumulate gradients that no optimizer ever applies:
    they never train. The optimizer that steps moves other parameters on stale or zero gradients.
    A layer replaced after the optimizer was built is not in any param group at all: its new
    parameters get gradients but never change. A model left out of every optimizer gets a gradient at
    each `backward()` and never changes: the network trains around a random head. Unfreezing changes
    `requires_grad`, not the optimizer's param groups: the unfrozen parameters get gradients that
    nothing applies (add them with `optimizer.add_param_group`).

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
        """
        import torch
        import torch.nn as nn


        class Backbone(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(10, 4)

            def forward(self, x):
                return self.embed(x).mean(1)


        class TiedHead(nn.Module):
            def __init__(self, backbone):
                super().__init__()
                self.out = nn.Linear(4, 10, bias=False)
                self.out.weight = backbone.embed.weight


        def main():
            model = Backbone()
            head = TiedHead(model)  # built from the model: it shares its weight
            vgg_features = nn.Linear(4, 4)  # a fixed feature extractor for a perceptual term
            opt = torch.optim.Adam(model.parameters())
            for _ in range(2):
                h = model(torch.randint(0, 10, (3, 5)))
                loss = h.pow(2).mean() + vgg_features(h).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()


        if __name__ == "__main__":
            main()
        """,
        """
        import torch
        import torch.nn as nn

        encoder, classifier = nn.Linear(4, 8), nn.Linear(8, 2)
        encoder.requires_grad_(False)
        optimizer = torch.optim.SGD(filter(lambda p: p.requires_grad, classifier.parameters()), lr=0.1)
        for epoch in range(4):
            if epoch == 2:
                encoder.requires_grad_(True)
                optimizer.add_param_group({"params": encoder.parameters()})
            loss = classifier(encoder(torch.randn(6, 4))).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        """,
        """
        import torch
        import torch.nn as nn

        encoder, classifier = nn.Linear(4, 8), nn.Linear(8, 2)
        encoder.requires_grad_(False)
        optimizer = torch.optim.SGD(filter(lambda p: p.requires_grad, classifier.parameters()), lr=0.1)
        for epoch in range(4):
            if epoch == 2:
                encoder.requires_grad_(True)
                optimizer = torch.optim.SGD([*encoder.parameters(), *classifier.parameters()], lr=0.1)
            loss = classifier(encoder(torch.randn(6, 4))).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        """,
        """
        import torch
        import torch.nn as nn


        class Extractor(nn.Module):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net(x)


        class Captioner(nn.Module):
            def __init__(self, img_encoder, dim=8):
                super().__init__()
                self.img_encoder = img_encoder
                self.head = nn.Linear(dim, 2)

            def forward(self, images):
                return self.head(self.img_encoder(images))


        encoder = nn.Linear(4, 8)
        encoder = Extractor(encoder)
        model = Captioner(img_encoder=encoder)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loss = model(torch.randn(3, 4)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        """,
        """
        import copy

        import torch
        import torch.nn as nn


        class Learner(nn.Module):
            def __init__(self):
                super().__init__()
                self.online = nn.Linear(4, 4)
                self.target = None

            def get_target(self):
                if self.target is None:
                    self.target = copy.deepcopy(self.online)
                    for p in self.target.parameters():
                        p.requires_grad = False
                return self.target

            def forward(self, x):
                with torch.no_grad():
                    goal = self.get_target()(x)
                return (self.online(x) - goal).pow(2).mean()


        learner = Learner()
        opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
        for _ in range(3):
            loss = learner(torch.randn(8, 4))
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


            def train_one_epoch(model, batches, optimizer):
                for x, y in batches:
                    optimizer.zero_grad()
                    nn.functional.mse_loss(model(x), y).backward()
                    optimizer.step()


            def main():
                model = nn.Linear(4, 1)
                optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
                model = nn.Linear(4, 1)  # expect: GT118
                train_one_epoch(model, [(torch.randn(8, 4), torch.randn(8, 1))], optimizer)
                return model, optimizer


            model, optimizer = main()
            in_opt = any(p is model.weight for g in optimizer.param_groups for p in g["params"])
            """,
            truth=Truth(grads={"not in_opt": "true"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Trainer:
                def __init__(self):
                    self.net = nn.Linear(4, 1)
                    self.opt = torch.optim.SGD(self.net.parameters(), lr=0.1)

                def reset(self):
                    self.net = nn.Linear(4, 1)  # expect: GT118

                def train_step(self, x, y):
                    loss = ((self.net(x) - y) ** 2).mean()
                    self.opt.zero_grad()
                    loss.backward()
                    self.opt.step()


            trainer = Trainer()
            trainer.reset()
            before = trainer.net.weight.detach().clone()
            for _ in range(3):
                trainer.train_step(torch.randn(8, 4), torch.randn(8, 1))
            net_unchanged = torch.equal(before, trainer.net.weight)
            """,
            truth=Truth(grads={"net_unchanged": "true"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Trainer:
                def __init__(self):
                    self.net = nn.Linear(4, 8)
                    self.head = nn.Linear(8, 1)
                    self.opt = torch.optim.SGD(self.net.parameters(), lr=0.1)  # expect: GT118

                def train_step(self, x, y):
                    loss = ((self.head(self.net(x)) - y) ** 2).mean()
                    self.opt.zero_grad()
                    loss.backward()
                    self.opt.step()


            trainer = Trainer()
            before = trainer.head.weight.detach().clone()
            for _ in range(3):
                trainer.train_step(torch.randn(8, 4), torch.randn(8, 1))
            head_unchanged = torch.equal(before, trainer.head.weight)
            """,
            truth=Truth(grads={"head_unchanged": "true"}),
        ),
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
        Invalid(
            """
            import torch
            import torch.nn as nn


            def train(model, head, opt, steps=3):
                for _ in range(steps):
                    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
                    loss = nn.functional.cross_entropy(head(model(x)), y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()


            if __name__ == "__main__":
                model = nn.Sequential(nn.Linear(4, 16), nn.ReLU())
                head = nn.Linear(16, 3)
                opt = torch.optim.SGD(model.parameters(), lr=0.1)  # expect: GT118
                before = head.weight.clone()
                train(model, head, opt)
                head_unchanged = torch.equal(before, head.weight) and head.weight.grad is not None
            """,
            truth=Truth(grads={"head_unchanged": "true"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            from torch.optim import Optimizer


            class PlainSGD(Optimizer):
                def __init__(self, params, lr=0.1):
                    super().__init__(params, {"lr": lr})

                @torch.no_grad()
                def step(self):
                    for group in self.param_groups:
                        for p in group["params"]:
                            if p.grad is not None:
                                p.add_(p.grad, alpha=-group["lr"])


            class ClassifierHead(nn.Module):
                def __init__(self, n_classes):
                    super().__init__()
                    self.linear = nn.Linear(8, n_classes)

                def forward(self, h):
                    return self.linear(h)


            encoder = nn.Linear(4, 8)
            clf = ClassifierHead(3)
            opt = PlainSGD(encoder.parameters())  # expect: GT118
            before = clf.linear.weight.clone()
            for _ in range(2):
                loss = nn.functional.cross_entropy(clf(encoder(torch.randn(6, 4))), torch.randint(0, 3, (6,)))
                opt.zero_grad()
                loss.backward()
                opt.step()
            head_unchanged = torch.equal(before, clf.linear.weight)
            """,
            truth=Truth(grads={"head_unchanged": "true"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            def fine_tune(epochs=4, unfreeze_at=2):
                encoder = nn.Linear(4, 8)
                classifier = nn.Linear(8, 2)
                encoder.requires_grad_(False)
                params = [p for p in list(encoder.parameters()) + list(classifier.parameters()) if p.requires_grad]  # expect: GT118
                optimizer = torch.optim.SGD(params, lr=0.1)
                before = encoder.weight.clone()
                for epoch in range(epochs):
                    if epoch == unfreeze_at:
                        for p in encoder.parameters():
                            p.requires_grad = True
                    loss = classifier(encoder(torch.randn(6, 4))).pow(2).mean()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                return torch.equal(before, encoder.weight) and encoder.weight.grad is not None


            encoder_unchanged = fine_tune()
            """,
            truth=Truth(grads={"encoder_unchanged": "true"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            def initialize(model, model_parameters, lr):
                optimizer = torch.optim.AdamW(model_parameters, lr=lr)
                return model, optimizer


            model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
            model[0].requires_grad_(False)
            engine, optimizer = initialize(model, filter(lambda p: p.requires_grad, model.parameters()), 1e-2)  # expect: GT118
            before = model[0].weight.clone()
            for epoch in range(4):
                if epoch == 2:
                    model[0].requires_grad_(True)
                loss = engine(torch.randn(6, 4)).pow(2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            encoder_unchanged = torch.equal(before, model[0].weight) and model[0].weight.grad is not None
            """,
            truth=Truth(grads={"encoder_unchanged": "true"}),
        ),
    )

    def check(self, ctx):
        flow = ctx.torch.flow
        self.check_left_out(ctx, flow)
        self.check_unfrozen_later(ctx, flow)
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
            others = [o for o in flow.optimizers if o is not optimizer and o.known]
            if all(any(overlaps(r, c) for o in others for c in o.coverage.srcs) for r in reached) and any(
                    overlaps(lost, c) for cut in sink.value.cuts for lost in cut.lost for c in coverage.srcs):
                continue  # the loss reaches what another optimizer trains, and this one's only through a cut
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
                       f"reaches only {names_phrase(sorted(reached))}, which `{name}` does not train.",
                       related=[ctx.related(sink.node, "the backward pass this optimizer steps after"),
                                ctx.related(step.node, "the step")],
                       data={"lost": [display(s) for s in sorted(reached)]})
        for surgery in flow.surgeries:
            if surgery.module.path != ctx.path:
                continue
            if not _left_out(flow, surgery):
                continue
            line = ctx.span(surgery.optimizer.node).line
            what = "model" if "." not in surgery.target or surgery.target.count(".") == 1 and surgery.target.startswith(
                "self.") else "layer"
            if surgery.parameter:
                what = "parameter"
            consequence = f"the new {what} never trains."
            ctx.report(surgery.node, f"`{surgery.target}` is replaced after the optimizer on line {line} was built: "
                       + consequence,
                       related=[ctx.related(surgery.optimizer.node, "optimizer built here")])
        return ()


    def check_left_out(self, ctx, flow):
        """A model built in this file that a stepped loss trains, in none of the file's optimizers."""
        optimizers = flow.optimizers
        if not optimizers or not all(o.known for o in optimizers):
            return
        covered = [c for o in optimizers for c in o.coverage.srcs]
        reported = set()
        for step in flow.steps:
            sink, optimizer = step.last_sink, step.optimizer.ref
            if sink is None or optimizer is None or step.module.path != ctx.path \
                    or optimizer.module.path != ctx.path:
                continue
            lost: dict[str, list[str]] = {}
            for source in sorted(sink.value.srcs):
                parts = source.split(".")
                root = ".".join(parts[:2]) if parts[0] == "self" and len(parts) > 1 else parts[0]
                if not any(overlaps(source, c) for c in covered) and _built_here_alone(ctx, flow, root, optimizer,
                                                                                       sink.node):
                    lost.setdefault(root, []).append(source)
            for root, sources in lost.items():
                if root in reported:
                    continue
                reported.add(root)
                ctx.report(optimizer.node,
                           f"`{root}` is trained by `{sink.label}` (line {ctx.span(sink.node).line}) but is in no "
                           "optimizer: it never changes.",
                           related=[ctx.related(flow.definitions[root][0], f"`{root}` is built here"),
                                    ctx.related(sink.node, "the backward pass that reaches it")],
                           data={"lost": [display(s) for s in sources]})


    def check_unfrozen_later(self, ctx, flow):
        """Parameters frozen when an optimizer kept only those requiring grad, unfrozen after it, then trained."""
        if "add_param_group" in ctx.source.text:
            return
        filters = {id(o): found for o in flow.optimizers
                   if o.known and o.module.path == ctx.path and (found := _requires_grad_filter(ctx, o)) is not None}
        filtered = [o for o in flow.optimizers if id(o) in filters]
        for optimizer in filtered:
            frozen = [f for f in flow.freezes if f.frozen and f.seq < optimizer.seq]
            for unfreeze in flow.freezes:
                if unfreeze.frozen or unfreeze.seq < optimizer.seq or unfreeze.module.path != ctx.path:
                    continue
                lost = sorted({s for s in unfreeze.srcs for f in frozen if any(overlaps(s, t) for t in f.srcs)})
                if not lost or not any(step.seq > unfreeze.seq for step in flow.steps):
                    continue
                if any((o not in filtered or o.seq > unfreeze.seq)
                       and any(overlaps(s, c) for s in lost for c in o.coverage.srcs) for o in flow.optimizers):
                    continue  # another optimizer holds them
                line = ctx.span(unfreeze.node).line
                ctx.report(filters[id(optimizer)], f"The optimizer keeps only parameters that require grad, so "
                           f"{names_phrase(lost)}, unfrozen later (line {line}), never trains.",
                           related=[ctx.related(optimizer.node, "optimizer built here"),
                                    ctx.related(unfreeze.node, "unfrozen here, after the optimizer was built")],
                           data={"lost": [display(s) for s in lost]})


def _requires_grad_filter(ctx, optimizer) -> ast.AST | None:
    """Where what the optimizer got was filtered by `requires_grad` (a filter, a comprehension's condition or an
    `if` in the function that builds it, before it; or a filter in this file handed to the helper that builds it),
    or None."""
    for extra in optimizer.coverage.extra:
        if isinstance(extra, tuple) and extra[:1] == ("requires_grad_filter",) and extra[2] == ctx.path:
            return extra[1]
    semantic = ctx.source.semantic
    scope = semantic.function_of(optimizer.node)
    for node in ctx.source.nodes(ast.Attribute):
        if node.attr == "requires_grad" and isinstance(node.ctx, ast.Load) and node.lineno <= optimizer.node.lineno:
            function = semantic.function_of(node)
            while isinstance(function, ast.Lambda):
                function = semantic.function_of(function)
            if function is not scope:
                continue
            for parent in semantic.ancestors(node):
                if isinstance(parent, ast.If):
                    return parent.test
                if isinstance(parent, (ast.comprehension, ast.Lambda, ast.IfExp)) or (
                        isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and parent.func.id == "filter"):
                    return node
                if isinstance(parent, ast.stmt):
                    break
    return None


def _left_out(flow, surgery) -> bool:
    """Does the replaced part really train without an optimizer? The old one is stepped again, or a later
    loss reaches the new part while no optimizer built after the replacement holds it."""
    target = surgery.target
    if any(f.frozen and f.seq > surgery.seq and any(overlaps(target, c) for c in f.srcs) for f in flow.freezes):
        return False  # frozen once made (a target network copied from the online one): not meant to train
    if any(step.seq > surgery.seq and step.optimizer.ref is not None and step.optimizer.ref.node is
           surgery.optimizer.node for step in flow.steps):
        return True
    if any(o.seq > surgery.seq and any(overlaps(target, c) for c in o.coverage.srcs) for o in flow.optimizers):
        return False  # built again over the new one
    return any(s.seq > surgery.seq and any(overlaps(target, r) for r in s.value.srcs) for s in flow.sinks)

def _handed_to_a_constructor(scope, name: str, definition: ast.AST) -> bool:
    """Is the model `name` passed, after `definition`, to a call that builds another (a class: a capitalised
    name), which may hold it: `Extractor(vit)`, `CoCa(img_encoder=vit)`?"""
    for call in ast.walk(scope):
        if not isinstance(call, ast.Call) or call.lineno < definition.lineno or call is getattr(definition, "value", None):
            continue
        callee = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        if callee[:1].isupper() and any(isinstance(a, ast.Name) and a.id == name
                                        for a in [*call.args, *(k.value for k in call.keywords)]):
            return True
    return False


def _built_here_alone(ctx, flow, root: str, optimizer, sink: ast.AST) -> bool:
    """`root = SomeModel(...)` or `root = nn.Linear(...)` where the optimizer is built (the same function, or
    both at module level), from no other model (a head built from a backbone may share, tie or wrap its
    parameters), not frozen, not updated by hand, not meant to stay fixed. `self.<layer>` counts when a trainer
    class builds it beside its optimizer and its own method steps the loss (names of `self` are the same object
    there)."""
    if flow.source_kind.get(root) != "module" or root not in flow.definitions:
        return False
    semantic = ctx.source.semantic
    if root.startswith("self"):
        owner = semantic.enclosing_class(optimizer.node)
        if "." not in root or owner is None or semantic.enclosing_class(sink) is not owner:
            return False
    node, module = flow.definitions[root]
    if module.path != ctx.path or not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Call):
        return False
    if semantic.function_of(node) is not semantic.function_of(optimizer.node):
        return False
    call = node.value
    if any(isinstance(a, ast.Name) and flow.source_kind.get(a.id) in ("module", "leaf")
           for a in [*call.args, *(k.value for k in call.keywords)]):
        return False
    if "." not in root and _handed_to_a_constructor(semantic.function_of(node) or ctx.source.tree, root, node):
        return False  # `coca = CoCa(img_encoder=vit)`: a model given to another is trained through it
    name = root.lower()
    if any(hint in name for hint in FROZEN_NAME_HINTS):
        return False
    if any(overlaps(root, s) for f in flow.freezes for s in f.srcs):
        return False  # its requires_grad is set somewhere: freezing is deliberate
    return not any(overlaps(root, s) for e in flow.inplace for s in e.target.srcs)

