import ast

from gradtrace.analysis.core.values import overlaps
from gradtrace.analysis.name_predicates import candidate_names, evaluate
from gradtrace.rules._torch_cut import names_phrase
from gradtrace.rules.base import Invalid, Rule, Truth


def _named_parameters_loop(node: ast.For):
    """(name variable, parameter variable) of `for n, p in X.named_parameters():`."""
    if not (isinstance(node.target, ast.Tuple) and len(node.target.elts) == 2):
        return None
    it = node.iter
    if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and it.func.attr == "named_parameters"):
        return None
    name_var, param_var = node.target.elts
    if isinstance(name_var, ast.Name) and isinstance(param_var, ast.Name):
        return name_var.id, param_var.id
    return None


def _freezes(stmt: ast.stmt, param: str) -> bool:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        t = stmt.targets[0]
        return (isinstance(t, ast.Attribute) and t.attr == "requires_grad" and isinstance(t.value, ast.Name)
                and t.value.id == param and isinstance(stmt.value, ast.Constant) and stmt.value.value is False)
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        call = stmt.value
        return (isinstance(call.func, ast.Attribute) and call.func.attr == "requires_grad_"
                and isinstance(call.func.value, ast.Name) and call.func.value.id == param and bool(call.args)
                and isinstance(call.args[0], ast.Constant) and call.args[0].value is False)
    return False


def freezing_sites(loop: ast.For, param: str):
    """(freezing statement, conditions [(test, polarity)]) inside the loop body."""
    def visit(body, conditions):
        for stmt in body:
            if _freezes(stmt, param):
                yield stmt, conditions
            elif isinstance(stmt, ast.If):
                yield from visit(stmt.body, conditions + [(stmt.test, True, stmt)])
                yield from visit(stmt.orelse, conditions + [(stmt.test, False, stmt)])
    yield from visit(loop.body, [])


def selections(tree_nodes):
    """Name-based selections `[p for n, p in X.named_parameters() if cond]` → (node, name var, conditions)."""
    for node in tree_nodes:
        if len(node.generators) != 1:
            continue
        gen = node.generators[0]
        if not (isinstance(gen.target, ast.Tuple) and len(gen.target.elts) == 2 and gen.ifs):
            continue
        it = gen.iter
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and it.func.attr == "named_parameters":
            name_var = gen.target.elts[0]
            if isinstance(name_var, ast.Name):
                yield node, name_var.id, gen.ifs


class FrozenButOptimized(Rule):
    code = "GT117"
    name = "frozen-but-optimized"
    summary = "Parameters frozen with `requires_grad = False` are exactly the ones the optimizer is given."
    docs = """
    ## What it does
    Finds a freezing loop over `named_parameters()` (`param.requires_grad = False` under a condition on
    the name) whose condition also matches parameters that the optimizer selects by name — typically
    an inverted condition that freezes the part meant to train, or an `if`/`else` whose both branches
    freeze (the test then selects nothing: every parameter is frozen). Also finds a model frozen on every pass of a
    training loop (`set_requires_grad(netD, False)` before a GAN's generator step, the helper's flag followed
    through the call) after the step that trains it, with nothing in the loop unfreezing it: only the first
    pass trains it.

    ## Why is this bad?
    A frozen parameter gets no gradient (`.grad` stays `None`), so the optimizer built for it never
    moves it; the part meant to stay frozen may train instead, or nothing trains at all.

    ## Example
    ```python
    for name, param in model.named_parameters():
        if "encoder" not in name:
            param.requires_grad = False
    head_params = [p for n, p in model.named_parameters() if n.startswith("head")]
    ```

    ## Use instead
    ```python
    for name, param in model.named_parameters():
        if "encoder" in name:
            param.requires_grad = False
    head_params = [p for n, p in model.named_parameters() if n.startswith("head")]
    ```

    ## Fix safety
    No automatic fix: decide which condition is the intended one.
    """
    valid = (
        """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F


        def set_requires_grad(net, flag):
            for p in net.parameters():
                p.requires_grad = flag


        netG, netD = nn.Linear(4, 2), nn.Linear(2, 1)
        opt_G = torch.optim.Adam(netG.parameters(), lr=1e-3)
        opt_D = torch.optim.Adam(netD.parameters(), lr=1e-3)
        real = torch.randn(8, 2)
        for _ in range(3):
            fake = netG(torch.randn(8, 4))
            set_requires_grad(netD, True)
            opt_D.zero_grad()
            loss_D = F.softplus(-netD(real)).mean() + F.softplus(netD(fake.detach())).mean()
            loss_D.backward()
            opt_D.step()
            set_requires_grad(netD, False)
            opt_G.zero_grad()
            F.softplus(-netD(fake)).mean().backward()
            opt_G.step()
        """,
        """
        import torch
        import torch.nn as nn

        model = nn.Module()
        model.encoder = nn.Linear(4, 4)
        model.head = nn.Linear(4, 2)
        for name, param in model.named_parameters():
            if name.startswith("encoder"):
                param.requires_grad = False
        opt = torch.optim.Adam([p for n, p in model.named_parameters() if n.startswith("head")])
        """,
        """
        import copy

        import torch
        import torch.nn as nn

        model = nn.Linear(4, 2)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        ema = copy.deepcopy(model).requires_grad_(False)
        model(torch.randn(3, 4)).sum().backward()
        opt.step()
        """,
        """
        import torch
        import torch.nn as nn

        backbone, head = nn.Linear(3, 4), nn.Linear(4, 2)
        model = nn.Sequential(backbone, head)
        backbone.requires_grad_(False)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model(torch.randn(5, 3)).sum().backward()
        opt.step()
        """,
        """
        import torch
        import torch.nn as nn


        class Adapter(nn.Module):
            def __init__(self, base):
                super().__init__()
                self.base = base
                self.down = nn.Linear(base.in_features, 2, bias=False)
                self.up = nn.Linear(2, base.out_features, bias=False)

            def forward(self, x):
                return self.base(x) + self.up(self.down(x))


        def add_adapters(model):
            for p in model.parameters():
                p.requires_grad = False
            for name in ("0", "2"):
                setattr(model, name, Adapter(getattr(model, name)))
            return model


        model = add_adapters(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1)))
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        loss = model(torch.randn(3, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn

            model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
            for name, p in model.named_parameters():
                if name.startswith("0."):
                    p.requires_grad = False
                else:
                    p.requires_grad = False  # expect: GT117
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            model(torch.randn(2, 4)).sum().backward()
            """,
            truth=Truth(raises=("RuntimeError", "does not require grad")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            import torch.nn.functional as F


            def set_requires_grad(net, flag):
                for p in net.parameters():
                    p.requires_grad = flag


            netG, netD = nn.Linear(4, 2), nn.Linear(2, 1)
            opt_G = torch.optim.Adam(netG.parameters(), lr=1e-3)
            opt_D = torch.optim.Adam(netD.parameters(), lr=1e-3)
            real = torch.randn(8, 2)
            for _ in range(3):
                fake = netG(torch.randn(8, 4))
                opt_D.zero_grad()
                loss_D = F.softplus(-netD(real)).mean() + F.softplus(netD(fake)).mean()
                loss_D.backward(retain_graph=True)
                opt_D.step()
                set_requires_grad(netD, False)  # expect: GT117
                opt_G.zero_grad()
                F.softplus(-netD(fake)).mean().backward()
                opt_G.step()
            """,
            truth=Truth(grads={"netD.weight": "none", "netG.weight": "ok"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            def init_head(encoder, x):
                encoder.requires_grad_(False)  # expect: GT117
                head = nn.Linear(4, 2)
                head.bias.data.copy_(encoder(x).mean(0)[:2])
                return head


            encoder = nn.Linear(3, 4)
            x = torch.randn(6, 3)
            head = init_head(encoder, x)
            opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-3)
            head(encoder(x)).sum().backward()
            """,
            truth=Truth(grads={"encoder.weight": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn

            backbone, head = nn.Linear(4, 4), nn.Linear(4, 2)
            head.requires_grad_(False)  # expect: GT117
            opt = torch.optim.SGD(head.parameters(), lr=0.1)
            loss = head(backbone(torch.randn(3, 4))).sum()
            loss.backward()
            """,
            truth=Truth(grads={"head.weight": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn

            model = nn.Module()
            model.encoder = nn.Linear(4, 4)
            model.head = nn.Linear(4, 2)
            for name, param in model.named_parameters():
                if "encoder" not in name:  # expect: GT117
                    param.requires_grad = False
            opt = torch.optim.Adam([p for n, p in model.named_parameters() if n.startswith("head")])
            loss = model.head(model.encoder(torch.randn(3, 4))).sum()
            loss.backward()
            """,
            truth=Truth(grads={"model.head.weight": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class cfg:
                learning_rate = 0.1
                finetune = "backbone.pth"


            net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
            optimizer = torch.optim.SGD(net.parameters(), lr=cfg.learning_rate)
            if cfg.finetune is not None:
                for param in net.parameters():
                    param.requires_grad = False  # expect: GT117
            loss = net(torch.randn(3, 4)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            """,
            truth=Truth(raises=("RuntimeError", "does not require grad")),
        ),
    )

    def check(self, ctx):
        if "requires_grad" not in ctx.source.text:
            return ()
        self.check_frozen_optimizer_targets(ctx)
        self.check_frozen_in_loop(ctx)
        if "named_parameters" not in ctx.source.text:
            return ()
        self.check_both_branches_freeze(ctx)
        picks = list(selections(ctx.source.nodes(ast.ListComp, ast.GeneratorExp)))
        if not picks:
            return ()
        for loop in ctx.source.nodes(ast.For):
            found = _named_parameters_loop(loop)
            if not found:
                continue
            name_var, param_var = found
            for stmt, conditions in freezing_sites(loop, param_var):
                if not conditions:
                    continue
                for pick, pick_var, ifs in picks:
                    clash = None
                    for candidate in candidate_names(ast.Tuple(elts=list(ifs), ctx=ast.Load())):
                        frozen = [evaluate(test, name_var, candidate) for test, _, _ in conditions]
                        frozen = [f if pol else (None if f is None else not f)
                                  for f, (_, pol, _) in zip(frozen, conditions)]
                        chosen = [evaluate(test, pick_var, candidate) for test in ifs]
                        if all(f is True for f in frozen) and all(c is True for c in chosen):
                            clash = candidate
                            break
                    if clash is None:
                        continue
                    outer_if = conditions[0][2]
                    span = ctx.span(outer_if.test)
                    from gradtrace.analysis.source import Span

                    end = ctx.span(stmt)
                    where = Span(span.line, span.column, end.end_line, end.end_column)
                    pick_line = ctx.span(pick).line
                    ctx.report(where, f"This freezes `{clash}`, which line {pick_line} selects for the optimizer: "
                               "is the condition inverted?", related=[ctx.related(pick, "the optimizer's selection")])
                    break
        return ()

    def check_both_branches_freeze(self, ctx):
        """`for name, p in model.named_parameters(): if <name test>: p.requires_grad = False else: p.requires_grad =
        False`: the test selects nothing, every parameter is frozen (a copy-paste slip)."""
        for loop in ctx.source.nodes(ast.For):
            found = _named_parameters_loop(loop)
            if not found:
                continue
            param = found[1]
            for stmt in loop.body:
                if not isinstance(stmt, ast.If) or not stmt.orelse:
                    continue
                if any(_freezes(s, param) for s in stmt.body) and any(_freezes(s, param) for s in stmt.orelse):
                    model = ast.unparse(loop.iter.func.value)
                    ctx.report(next(s for s in stmt.orelse if _freezes(s, param)),
                               f"Both branches freeze `{param}`: the test on line {stmt.lineno} selects nothing, and "
                               f"every parameter of `{model}` is frozen.")

    def check_frozen_in_loop(self, ctx):
        """`set_requires_grad(netD, False)` on every pass of a training loop whose other step trains `netD`, with
        nothing in the loop switching it back on: from the second pass on, `netD` gets no gradient."""
        flow = ctx.torch.flow
        if not flow.steps or not any(f.frozen for f in flow.freezes):
            return
        semantic = ctx.source.semantic
        reported: set = set()
        for freeze in flow.freezes:
            if not freeze.frozen or not freeze.srcs:
                continue
            place = next((n for n in (*freeze.sites, freeze.node) if _in_file(ctx, n)), None)
            if place is None:
                continue
            loops = semantic.loops_around(place)
            if place is freeze.node and loops and isinstance(loops[0], ast.For) and "parameters(" in ast.unparse(
                    loops[0].iter):
                place = loops[0]  # `for p in netD.parameters(): p.requires_grad = False`
            for loop in semantic.loops_around(place):
                if not _unconditional_in(semantic, place, loop):
                    break
                undone = any(not f.frozen and any(overlaps(a, b) for a in f.srcs for b in freeze.srcs) and any(
                    semantic.in_loop(n, loop) or n is loop for n in (*f.sites, f.node) if _in_file(ctx, n))
                    for f in flow.freezes)
                if undone:
                    break
                stepped = [st for st in flow.steps if st.optimizer.ref is not None and _in_file(ctx, st.node)
                           and not _picks_an_element(st.optimizer.ref.node)
                           and semantic.in_loop(st.node, loop) and st.seq < freeze.seq and any(
                               overlaps(a, b) for a in st.optimizer.ref.coverage.srcs for b in freeze.srcs)]
                if not stepped or id(place) in reported:
                    continue
                reported.add(id(place))
                names = names_phrase(sorted(freeze.srcs))
                step = stepped[0]
                ctx.report(place, f"This freezes {names} on every pass of the loop and nothing unfreezes it: after the "
                                  f"first pass, line {step.node.lineno} no longer trains it.",
                           related=[ctx.related(step.node, "the step that trains it")])
                break

    def check_frozen_optimizer_targets(self, ctx):
        """`model.head.requires_grad_(False)` while the optimizer is built over `model.head` only."""
        flow = ctx.torch.flow
        unfrozen = [f for f in flow.freezes if not f.frozen]
        for freeze in flow.freezes:
            if not freeze.frozen or freeze.conditional or freeze.module.path != ctx.path:
                continue
            if any(_picks_an_element(site) for site in (*freeze.sites, freeze.node)):
                continue  # `layers[i].lock_grad()`: which element is not known, nor whether the optimizer's is it
            if _layers_added_after(ctx.source.semantic, freeze.node):
                continue  # `setattr(layer, name, LoraLinear(...))` after freezing: new layers that train
            for optimizer in flow.optimizers:
                srcs = optimizer.coverage.srcs
                if not optimizer.known or not srcs or optimizer.module.path != ctx.path:
                    continue
                if _picks_an_element(optimizer.node):
                    continue  # `SGD(layers[i].parameters())`: one element, which the analysis does not tell apart
                if _steps_before_only(flow, optimizer, freeze):
                    continue  # frozen once its training is over (statement order): nothing is lost
                # what the optimizer is given by name (`encoder.parameters()`), not a parent that merely
                # contains the frozen part (`model.parameters()` with a frozen backbone is the usual fine-tuning)
                frozen = [c for c in sorted(srcs) if any(c == f or c.startswith(f + ".") for f in freeze.srcs)]
                if not frozen or any(any(overlaps(c, u) for u in f.srcs) for f in unfrozen for c in frozen):
                    continue
                names = names_phrase(frozen)
                line = ctx.span(optimizer.node).line
                if len(frozen) == len(srcs):
                    message = f"This freezes {names}, which is all the optimizer on line {line} trains."
                else:
                    message = f"This freezes {names}, which the optimizer on line {line} is given to train."
                ctx.report(freeze.node, message, related=[ctx.related(optimizer.node, "optimizer built here")])


def _layers_added_after(semantic, node) -> bool:
    """Does the function that froze go on to put new layers into a model (`setattr(layer, name, Adapter(...))`,
    `block.proj = LoraLinear(...)`)? Their parameters are not frozen."""
    scope = semantic.function_of(node)
    if scope is None:
        return False
    after = (node.lineno, node.col_offset)
    for sub in ast.walk(scope):
        if (getattr(sub, "lineno", 0), getattr(sub, "col_offset", 0)) <= after:
            continue
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == "setattr" \
                and len(sub.args) == 3 and isinstance(sub.args[2], ast.Call):
            return True
        if isinstance(sub, ast.Assign) and isinstance(sub.value, ast.Call) and any(
                isinstance(t, (ast.Attribute, ast.Subscript)) for t in sub.targets):
            func = sub.value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name[:1].isupper():
                return True
    return False


def _picks_an_element(node) -> bool:
    """A call or statement acting on an element of a container chosen by a computed index (`layers[i]...`)."""
    return any(isinstance(n, ast.Subscript) and not isinstance(n.slice, ast.Constant) for n in ast.walk(node))


def _in_file(ctx, node) -> bool:
    return any(n is node for n in ctx.source.nodes(type(node)))


def _unconditional_in(semantic, node, loop) -> bool:
    """`node` runs on every pass of `loop` (no `if` or inner loop between them)."""
    for parent in semantic.ancestors(node):
        if parent is loop:
            return True
        if isinstance(parent, (ast.If, ast.IfExp, ast.For, ast.While, ast.Try, ast.FunctionDef, ast.Lambda)):
            return False
    return False


def _steps_before_only(flow, optimizer, freeze) -> bool:
    """The optimizer steps, and every one of its steps runs before the freeze."""
    steps = [s for s in flow.steps if s.optimizer.ref is not None and s.optimizer.ref.node is optimizer.node]
    return bool(steps) and all(s.seq < freeze.seq for s in steps)
