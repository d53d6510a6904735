from gradtrace.analysis.core.values import display
from gradtrace.analysis.torch_facts import dead_terms
from gradtrace.rules._torch_cut import names_phrase
from gradtrace.rules.base import Invalid, Rule, Truth


class DeadLossTerm(Rule):
    code = "GT141"
    name = "dead-loss-term"
    summary = "A summand of the loss carries no gradient: its weight does nothing, even where other terms train."
    docs = """
    ## What it does
    Follows each term added into a loss that `backward()` differentiates (`loss = recon + beta * kl`,
    `sum(losses)`, `total += aux`) and finds a term that no trainable value reaches any more because what
    it was computed from was cut on its way (`.detach()`, `.item()`, NumPy, `no_grad`), although those
    values are trained by an optimizer. Other terms may still train the same parameters, so nothing else
    warns: this term simply contributes no gradient.

    ## Why is this bad?
    A regulariser or auxiliary loss whose gradient is zero does not regularise: the weight you tuned for
    it changes the logged loss value and nothing else. The model trains as if the term were absent.

    ## Example
    ```python
    feats = encoder(x)
    recon = F.mse_loss(decoder(feats), x)
    sparsity = feats.detach().abs().mean()
    loss = recon + 0.1 * sparsity
    ```

    ## Use instead
    ```python
    sparsity = feats.abs().mean()
    loss = recon + 0.1 * sparsity
    ```

    ## Fix safety
    No automatic fix: remove the cut on the term's path, or drop the term if it is only there for logging.
    """
    valid = (
        """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        encoder, decoder = nn.Linear(8, 4), nn.Linear(4, 8)
        opt = torch.optim.Adam(list(encoder.parameters()) + list(decoder.parameters()))
        x = torch.randn(16, 8)
        feats = encoder(x)
        recon = F.mse_loss(decoder(feats), x)
        loss = recon + 0.1 * feats.abs().mean()
        loss.backward()
        print(recon.item() + 0.1 * feats.detach().abs().mean().item())
        """,
        """
        import torch
        import torch.nn as nn

        policy, target = nn.Linear(4, 2), nn.Linear(4, 2)
        opt = torch.optim.Adam(policy.parameters())
        s = torch.randn(8, 4)
        q = policy(s).max(1)[0]
        loss = (q - (1.0 + 0.9 * target(s).max(1)[0].detach())).pow(2).mean()
        loss.backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn
            import torch.nn.functional as F

            encoder, decoder = nn.Linear(8, 4), nn.Linear(4, 8)
            opt = torch.optim.Adam(list(encoder.parameters()) + list(decoder.parameters()))
            x = torch.randn(16, 8)
            feats = encoder(x)
            recon = F.mse_loss(decoder(feats), x)
            sparsity = feats.detach().abs().mean()  # expect: GT141
            loss = recon + 0.1 * sparsity
            loss.backward()
            sparsity_has_grad = sparsity.requires_grad
            """,
            truth=Truth(grads={"sparsity_has_grad": "false"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            def compute_losses(pred, target, attention):
                losses = {}
                losses["fit"] = (pred - target).pow(2).mean()
                losses["entropy"] = -(attention * attention.clamp_min(1e-6).log()).sum(-1).mean()
                return losses


            net = nn.Linear(6, 6)
            x = torch.randn(5, 6)
            pred = net(x)
            attention = pred.softmax(-1).detach()  # expect: GT141
            losses = compute_losses(pred, x, attention)
            total = torch.stack([value for value in losses.values()]).sum()
            total.backward()
            entropy_has_grad = losses["entropy"].requires_grad
            """,
            truth=Truth(grads={"entropy_has_grad": "false"}),
        ),
    )

    def check(self, ctx):
        facts = ctx.torch
        # a cut already reported as leaving something untrained (a partial loss is still a dead term here)
        reported = {id(d.cut.node) for d in facts.dead if d.severity == "warning" and not d.partial}
        for term in dead_terms(facts):
            c = term.cut
            if c.module is None or c.module.path != ctx.path or id(c.node) in reported:
                continue
            reported.add(id(c.node))
            ctx.report(c.node, f"This term adds no gradient: `{c.op}` cuts it from {names_phrase(term.lost)}.",
                       related=[ctx.related(term.node, "the term, added to the loss here"),
                                ctx.related(term.sink.node, f"differentiated here (`{term.sink.label}`)")],
                       data={"lost": [display(s) for s in term.lost], "op": c.op, "kind": c.kind})
        return ()
