import ast

from gradtrace.findings import Fix
from gradtrace.fixes.edits import delete_statement, enclosing_statement, replace_node
from gradtrace.rules._torch_cut import call_receiver, report_dead_cuts
from gradtrace.rules.base import Invalid, Rule, Truth


def remove_detach(ctx, dead):
    node = dead.cut.node
    receiver = call_receiver(node)
    if receiver is None:
        return None
    if dead.cut.op == ".detach_()":
        stmt, body = enclosing_statement(ctx.source, node)
        if isinstance(stmt, ast.Expr) and stmt.value is node:
            return Fix("Remove `.detach_()`", True, (delete_statement(ctx.source, stmt, body),))
        return None
    return Fix("Remove `.detach()`", True, (replace_node(ctx.source, node, ctx.source.segment(receiver)),))


class DetachOnPath(Rule):
    code = "GT105"
    name = "detach-on-loss-path"
    summary = "`.detach()` on the only path from trainable parameters to the loss."
    docs = """
    ## What it does
    Finds a `.detach()` or `.detach_()` that disconnects parameters which should train from the loss:
    every path from them to `backward()` goes through the detach. Forward hooks run where their layer is
    called (`return output.detach()` in a hook replaces the layer's output), and `torch.func.functional_call`
    runs the module on the tensors of its dict (detached copies of the parameters cut them: a MAML outer loss
    then trains nothing).

    ## Why is this bad?
    `detach()` returns a tensor that shares data but has no history. Everything computed before it gets
    no gradient from this loss: its `.grad` stays `None` and the optimizer never moves it. If nothing
    else in the loss requires grad, `backward()` raises "element 0 of tensors does not require grad".
    Intended detaches stay quiet: targets (DQN, distillation), straight-through estimators
    (`x + (q - x).detach()`), stop-gradient branches whose parameters still reach the loss another way,
    truncated-BPTT state, and parts that no optimizer trains.

    ## Example
    ```python
    feats = encoder(x).detach()
    loss = criterion(head(feats), y)
    ```

    ## Use instead
    ```python
    feats = encoder(x)
    loss = criterion(head(feats), y)
    ```

    ## Fix safety
    Removing the detach is offered as a safe fix: it reconnects the only path, which is what a
    parameter in the optimizer needs. Detach only the branch that must not train if one needs it.
    """
    valid = (
        """
        import torch
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.features = nn.Linear(8, 16)
                self.head = nn.Linear(16, 2)
                self.features.register_forward_hook(self.keep_features)

            def keep_features(self, module, inputs, output):
                self.cached = output.detach()

            def forward(self, x):
                return self.head(torch.relu(self.features(x)))


        net = Net()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        net(torch.randn(4, 8)).sum().backward()
        """,
        """
        import torch
        import torch.nn as nn

        encoder, head = nn.Linear(4, 8), nn.Linear(8, 1)
        opt = torch.optim.SGD(list(encoder.parameters()) + list(head.parameters()), lr=0.1)
        x = torch.randn(2, 4)
        h = encoder(x)
        log_copy = h.detach()
        loss = head(h).pow(2).mean()
        loss.backward()
        """,
        """
        import torch
        import torch.nn as nn

        policy, target = nn.Linear(4, 2), nn.Linear(4, 2)
        opt = torch.optim.Adam(policy.parameters())
        s, s2 = torch.randn(8, 4), torch.randn(8, 4)
        q = policy(s).max(1)[0]
        next_q = target(s2).max(1)[0].detach()
        loss = (q - (1.0 + 0.9 * next_q)).pow(2).mean()
        loss.backward()
        """,
        """
        import torch
        import torch.nn as nn

        net = nn.Linear(4, 4)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x = net(torch.randn(2, 4))
        q = torch.round(x)
        y = x + (q - x).detach()
        y.sum().backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn

            encoder, head = nn.Linear(4, 8), nn.Linear(8, 1)
            opt = torch.optim.SGD(list(encoder.parameters()) + list(head.parameters()), lr=0.1)
            x = torch.randn(2, 4)
            feats = encoder(x).detach()  # expect: GT105
            loss = head(feats).pow(2).mean()
            loss.backward()
            """,
            fixed="""
            import torch
            import torch.nn as nn

            encoder, head = nn.Linear(4, 8), nn.Linear(8, 1)
            opt = torch.optim.SGD(list(encoder.parameters()) + list(head.parameters()), lr=0.1)
            x = torch.randn(2, 4)
            feats = encoder(x)  # expect: GT105
            loss = head(feats).pow(2).mean()
            loss.backward()
            """,
            truth=Truth(grads={"encoder.weight": "none", "encoder.bias": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.backbone = nn.Linear(4, 8)
                    self.classifier = nn.Linear(8, 2)

                def forward(self, x):
                    pooled = self.backbone(x)
                    pooled.detach_()  # expect: GT105
                    return self.classifier(pooled)


            net = Net()
            opt = torch.optim.SGD(net.parameters(), lr=0.1)
            loss = net(torch.randn(3, 4)).sum()
            loss.backward()
            """,
            truth=Truth(grads={"net.backbone.weight": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Block(nn.Module):
                def __init__(self, dim):
                    super().__init__()
                    self.norm = nn.LayerNorm(dim)
                    self.mlp = nn.Linear(dim, dim)

                def forward(self, x):
                    return x + self.mlp(self.norm(x)).detach()  # expect: GT105


            class Encoder(nn.Module):
                def __init__(self, dim=8, depth=3, block_fn=Block):
                    super().__init__()
                    self.blocks = nn.Sequential(*[block_fn(dim) for _ in range(depth)])
                    self.head = nn.Linear(dim, 2)

                def forward(self, x):
                    return self.head(self.blocks(x))


            model = Encoder()
            opt = torch.optim.AdamW(model.parameters())
            model(torch.randn(4, 8)).sum().backward()
            """,
            fixed="""
            import torch
            import torch.nn as nn


            class Block(nn.Module):
                def __init__(self, dim):
                    super().__init__()
                    self.norm = nn.LayerNorm(dim)
                    self.mlp = nn.Linear(dim, dim)

                def forward(self, x):
                    return x + self.mlp(self.norm(x))  # expect: GT105


            class Encoder(nn.Module):
                def __init__(self, dim=8, depth=3, block_fn=Block):
                    super().__init__()
                    self.blocks = nn.Sequential(*[block_fn(dim) for _ in range(depth)])
                    self.head = nn.Linear(dim, 2)

                def forward(self, x):
                    return self.head(self.blocks(x))


            model = Encoder()
            opt = torch.optim.AdamW(model.parameters())
            model(torch.randn(4, 8)).sum().backward()
            """,
            truth=Truth(grads={"model.blocks[0].mlp.weight": "none", "model.blocks[2].norm.weight": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.features = nn.Linear(8, 16)
                    self.head = nn.Linear(16, 2)
                    self.features.register_forward_hook(self.keep_features)

                def keep_features(self, module, inputs, output):
                    self.cached = output
                    return output.detach()  # expect: GT105

                def forward(self, x):
                    return self.head(torch.relu(self.features(x)))


            net = Net()
            opt = torch.optim.SGD(net.parameters(), lr=0.1)
            net(torch.randn(4, 8)).sum().backward()
            """,
            fixed="""
            import torch
            import torch.nn as nn


            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.features = nn.Linear(8, 16)
                    self.head = nn.Linear(16, 2)
                    self.features.register_forward_hook(self.keep_features)

                def keep_features(self, module, inputs, output):
                    self.cached = output
                    return output  # expect: GT105

                def forward(self, x):
                    return self.head(torch.relu(self.features(x)))


            net = Net()
            opt = torch.optim.SGD(net.parameters(), lr=0.1)
            net(torch.randn(4, 8)).sum().backward()
            """,
            truth=Truth(grads={"net.features.weight": "none", "net.head.weight": "ok"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn

            activations = {}


            def keep(module, inputs, output):
                activations["enc"] = output
                return output.detach()  # expect: GT105


            class AutoEncoder(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.enc = nn.Linear(8, 4)
                    self.dec = nn.Linear(4, 8)

                def forward(self, x):
                    return self.dec(self.enc(x))


            model = AutoEncoder()
            model.enc.register_forward_hook(keep)
            opt = torch.optim.Adam(model.parameters())
            x = torch.randn(4, 8)
            ((model(x) - x) ** 2).mean().backward()
            """,
            fixed="""
            import torch
            import torch.nn as nn

            activations = {}


            def keep(module, inputs, output):
                activations["enc"] = output
                return output  # expect: GT105


            class AutoEncoder(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.enc = nn.Linear(8, 4)
                    self.dec = nn.Linear(4, 8)

                def forward(self, x):
                    return self.dec(self.enc(x))


            model = AutoEncoder()
            model.enc.register_forward_hook(keep)
            opt = torch.optim.Adam(model.parameters())
            x = torch.randn(4, 8)
            ((model(x) - x) ** 2).mean().backward()
            """,
            truth=Truth(grads={"model.enc.weight": "none", "model.dec.weight": "ok"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            from torch.func import functional_call

            model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
            meta_opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            x, y = torch.randn(8, 4), torch.randn(8, 1)
            fast = {name: p.detach().requires_grad_() for name, p in model.named_parameters()}  # expect: GT105
            inner = ((functional_call(model, fast, (x,)) - y) ** 2).mean()
            grads = torch.autograd.grad(inner, list(fast.values()), create_graph=True)
            fast = {n: w - 0.1 * g for (n, w), g in zip(fast.items(), grads)}
            outer = ((functional_call(model, fast, (x,)) - y) ** 2).mean()
            meta_opt.zero_grad()
            outer.backward()
            """,
            fixed="""
            import torch
            import torch.nn as nn
            from torch.func import functional_call

            model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
            meta_opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            x, y = torch.randn(8, 4), torch.randn(8, 1)
            fast = {name: p.requires_grad_() for name, p in model.named_parameters()}  # expect: GT105
            inner = ((functional_call(model, fast, (x,)) - y) ** 2).mean()
            grads = torch.autograd.grad(inner, list(fast.values()), create_graph=True)
            fast = {n: w - 0.1 * g for (n, w), g in zip(fast.items(), grads)}
            outer = ((functional_call(model, fast, (x,)) - y) ** 2).mean()
            meta_opt.zero_grad()
            outer.backward()
            """,
            truth=Truth(grads={"model[0].weight": "none", "model[2].weight": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Classifier(nn.Module):
                def __init__(self, backbone):
                    super().__init__()
                    self.backbone = backbone

                def forward(self, x):
                    return self.backbone(x).softmax(-1).detach()  # expect: GT105


            model = Classifier(nn.Linear(4, 3))
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            loss = nn.functional.nll_loss(model(torch.randn(2, 4)), torch.tensor([0, 1]))
            loss.backward()
            """,
            fixed="""
            import torch
            import torch.nn as nn


            class Classifier(nn.Module):
                def __init__(self, backbone):
                    super().__init__()
                    self.backbone = backbone

                def forward(self, x):
                    return self.backbone(x).softmax(-1)  # expect: GT105


            model = Classifier(nn.Linear(4, 3))
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            loss = nn.functional.nll_loss(model(torch.randn(2, 4)), torch.tensor([0, 1]))
            loss.backward()
            """,
            truth=Truth(raises=("RuntimeError", "does not require grad")),
        ),
    )

    def check(self, ctx):
        report_dead_cuts(ctx, ("detach",), fix_builder=remove_detach)
        return ()
