from gradtrace.rules._torch_cut import report_dead_cuts
from gradtrace.rules.base import Invalid, Rule, Truth


class NoGradRegion(Rule):
    code = "GT109"
    name = "no-grad-region-on-path"
    summary = "A `torch.no_grad()` / `inference_mode()` block computes something the loss needs from trainable parameters."
    docs = """
    ## What it does
    Finds `with torch.no_grad():`, `with torch.inference_mode():` and `with torch.set_grad_enabled(False):`
    blocks that compute, from parameters that should train, a value the loss later uses.

    ## Why is this bad?
    Nothing computed inside the block is recorded: the parameters used there get no gradient from
    this loss. If the whole loss was computed inside, `backward()` raises "element 0 of tensors does
    not require grad". Evaluation loops, targets (DQN, distillation teachers), rollout statistics
    and EMA updates under `no_grad` are intended and stay quiet.

    ## Example
    ```python
    with torch.no_grad():
        mask = tokens.eq(pad)
        pos = self.pos_embed(positions)
    h = self.encoder(x + pos, src_key_padding_mask=mask)
    ```

    ## Use instead
    ```python
    with torch.no_grad():
        mask = tokens.eq(pad)
    pos = self.pos_embed(positions)
    h = self.encoder(x + pos, src_key_padding_mask=mask)
    ```

    ## Fix safety
    No automatic fix: move the computation that must train out of the block.
    """
    valid = (
        """
        import torch
        import torch.nn as nn


        class MoCo(nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder_q = nn.Linear(8, 4)
                self.encoder_k = nn.Linear(8, 4)
                for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
                    param_k.data.copy_(param_q.data)
                    param_k.requires_grad = False

            def forward(self, im_q, im_k):
                q = self.encoder_q(im_q)
                with torch.no_grad():
                    k = self.encoder_k(im_k)
                return (q * k).sum(1)


        if __name__ == "__main__":
            model = MoCo()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.03)
            loss = model(torch.randn(4, 8), torch.randn(4, 8)).mean()
            loss.backward()
            optimizer.step()
        """,
        """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(8, 4)
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        with torch.no_grad():
            val = model(x).pow(2).mean()
        """,
        """
        import torch
        import torch.nn as nn

        student, teacher = nn.Linear(4, 2), nn.Linear(4, 2)
        opt = torch.optim.SGD(student.parameters(), lr=0.1)
        x = torch.randn(8, 4)
        with torch.no_grad():
            soft = teacher(x).softmax(-1)
        loss = -(soft * student(x).log_softmax(-1)).sum(-1).mean()
        loss.backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn

            encoder, head = nn.Linear(4, 8), nn.Linear(8, 1)
            opt = torch.optim.SGD(list(encoder.parameters()) + list(head.parameters()), lr=0.1)
            with torch.no_grad():  # expect: GT109
                feats = encoder(torch.randn(2, 4))
            loss = head(feats).pow(2).mean()
            loss.backward()
            """,
            truth=Truth(grads={"encoder.weight": "none"}),
        ),
    )

    def check(self, ctx):
        report_dead_cuts(ctx, ("no_grad",))
        return ()
