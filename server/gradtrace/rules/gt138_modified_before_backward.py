
from gradtrace.analysis.core.values import display
from gradtrace.rules._torch_cut import names_phrase, rebound_after
from gradtrace.rules.base import Invalid, Rule, Truth


class ModifiedBeforeBackward(Rule):
    code = "GT138"
    name = "parameters-modified-before-backward"
    summary = "An optimizer step changes parameters a loss's graph saved before that loss's `backward()` runs."
    severity = "error"
    docs = """
    ## What it does
    Finds an `optimizer.step()` (or an in-place update of a parameter under `no_grad`) that runs after a
    loss was built from those parameters and before that loss's `backward()`: the classic GAN and
    actor-critic ordering mistake (`d_opt.step()` between computing `g_loss = -D(G(z)).mean()` and
    `g_loss.backward()`). A step followed, in its block, by a rebinding of the loss (`optimizer.step();
    loss = 0` every k batches) drops that graph: only the paths that did not step carry it, and stay quiet.

    ## Why is this bad?
    The forward pass saved the parameters, and the step updates them in place: the later
    `backward()` raises "one of the variables needed for gradient computation has been modified by an
    inplace operation". (A linear layer keeps its weight to compute the gradient of its input; the
    in-place update bumps the weight's version counter.) The parameters the second loss should train
    never get a gradient.

    ## Example
    ```python
    g_loss = -D(fake).mean()      # D's weights saved here
    d_loss.backward()
    d_opt.step()                  # D changed in place
    g_loss.backward()             # raises
    ```

    ## Use instead
    ```python
    d_loss.backward()
    d_opt.step()
    g_loss = -D(fake).mean()      # built after D's update
    g_loss.backward()
    ```

    ## Fix safety
    No automatic fix: either build the second loss after the step, or run both backward passes before
    any step (and mind which gradients each optimizer then sees).
    """
    valid = (
        """
        import torch
        import torch.nn as nn


        def repackage_hidden(h):
            if isinstance(h, torch.Tensor):
                return h.detach()
            return tuple(repackage_hidden(v) for v in h)


        rnn = nn.LSTM(4, 8)
        opt = torch.optim.SGD(rnn.parameters(), lr=0.1)
        hidden = None
        for step in range(3):
            if hidden is not None:
                hidden = repackage_hidden(hidden)
            out, hidden = rnn(torch.randn(5, 2, 4), hidden)
            loss = out.pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        """,
        """
        import torch
        import torch.nn as nn

        G, D = nn.Linear(4, 4), nn.Linear(4, 1)
        g_opt = torch.optim.Adam(G.parameters())
        d_opt = torch.optim.Adam(D.parameters())
        for _ in range(2):
            fake = G(torch.randn(8, 4))
            d_loss = D(fake.detach()).mean() - D(torch.randn(8, 4)).mean()
            d_opt.zero_grad()
            d_loss.backward()
            d_opt.step()
            g_loss = -D(fake).mean()
            g_opt.zero_grad()
            g_loss.backward()
            g_opt.step()
        """,
        """
        import torch
        import torch.nn as nn

        actor, critic = nn.Linear(4, 2), nn.Linear(6, 1)
        a_opt = torch.optim.Adam(actor.parameters())
        c_opt = torch.optim.Adam(critic.parameters())
        s = torch.randn(8, 4)
        critic_loss = critic(torch.cat([s, actor(s).detach()], 1)).pow(2).mean()
        actor_loss = -critic(torch.cat([s, actor(s)], 1)).mean()
        c_opt.zero_grad()
        a_opt.zero_grad()
        critic_loss.backward()
        actor_loss.backward()
        c_opt.step()
        a_opt.step()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn

            G = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
            D = nn.Sequential(nn.Linear(8, 1), nn.Sigmoid())
            opt_G = torch.optim.Adam(G.parameters())
            opt_D = torch.optim.Adam(D.parameters())
            for step in range(2):
                opt_G.zero_grad()
                opt_D.zero_grad()
                d_real = D(torch.randn(4, 8))
                d_fake = D(G(torch.randn(4, 4)))
                d_loss = torch.log(d_real).mean() + torch.log(1 - d_fake).mean()
                d_loss.backward(retain_graph=True)
                opt_D.step()  # expect: GT138
                g_loss = -torch.log(d_fake).mean()
                g_loss.backward()
                opt_G.step()
            """,
            truth=Truth(raises=("RuntimeError", "modified by an inplace operation")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn

            G, D = nn.Linear(4, 4), nn.Linear(4, 1)
            g_opt = torch.optim.Adam(G.parameters())
            d_opt = torch.optim.Adam(D.parameters())
            fake = G(torch.randn(8, 4))
            d_loss = D(fake.detach()).mean() - D(torch.randn(8, 4)).mean()
            g_loss = -D(fake).mean()
            d_opt.zero_grad()
            d_loss.backward()
            d_opt.step()  # expect: GT138
            g_opt.zero_grad()
            g_loss.backward()
            g_opt.step()
            """,
            truth=Truth(raises=("RuntimeError", "modified by an inplace operation")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn

            G = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 8))
            D = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())
            opt_D = torch.optim.Adam(D.parameters())
            opt_G = torch.optim.Adam(G.parameters())
            ideas = torch.randn(4, 5, requires_grad=True)
            prob_fake = D(G(ideas))
            G_loss = torch.mean(torch.log(1.0 - prob_fake))
            D_loss = -torch.mean(torch.log(D(torch.randn(4, 8))) + torch.log(1.0 - prob_fake))
            opt_D.zero_grad()
            D_loss.backward(retain_graph=True)
            opt_D.step()  # expect: GT138
            opt_G.zero_grad()
            G_loss.backward()
            opt_G.step()
            """,
            truth=Truth(raises=("RuntimeError", "modified by an inplace operation")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Agent:
                def __init__(self):
                    self.actor = nn.Linear(4, 2)
                    self.critic = nn.Linear(6, 1)
                    self.actor_opt = torch.optim.Adam(self.actor.parameters())
                    self.critic_opt = torch.optim.Adam(self.critic.parameters())

                def update(self, s):
                    q = self.critic(torch.cat([s, self.actor(s).detach()], 1))
                    critic_loss = q.pow(2).mean()
                    actor_loss = -self.critic(torch.cat([s, self.actor(s)], 1)).mean()
                    self.critic_opt.zero_grad()
                    critic_loss.backward()
                    self.critic_opt.step()  # expect: GT138
                    self.actor_opt.zero_grad()
                    actor_loss.backward()
                    self.actor_opt.step()


            agent = Agent()
            agent.update(torch.randn(8, 4))
            """,
            truth=Truth(raises=("RuntimeError", "modified by an inplace operation")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class AdversarialLoss:
                def __init__(self):
                    self.critic = nn.Linear(4, 2)
                    self.critic_opt = torch.optim.SGD(self.critic.parameters(), lr=0.1)

                def step(self, data, model, optimizer):
                    latent = model(data)
                    scores = self.critic(latent)
                    model_loss = latent.pow(2).mean() + scores[:, 0].mean()
                    optimizer.zero_grad()
                    model_loss.backward(retain_graph=True)
                    optimizer.step()  # expect: GT138
                    critic_loss = nn.functional.cross_entropy(scores, torch.zeros(len(data), dtype=torch.long))
                    self.critic_opt.zero_grad()
                    critic_loss.backward()
                    self.critic_opt.step()


            model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 4))
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            AdversarialLoss().step(torch.randn(6, 4), model, optimizer)
            """,
            truth=Truth(raises=("RuntimeError", "modified by an inplace operation")),
        ),
    )

    def check(self, ctx):
        for event in ctx.torch.flow.modified_before_backward:
            if event.module.path != ctx.path:
                continue
            sink = event.sink
            changed = sorted(s for s in event.srcs if not s.startswith("<"))
            if not changed or (sink.node.lineno < event.node.lineno
                               and rebound_after(ctx.source.semantic, event.node, sink.label)):
                # the backward before the step, in the next pass: the loss the step's block rebinds is a new one
                continue
            line = ctx.span(sink.node).line
            ctx.report(event.node,
                       f"`{event.op}` changes {names_phrase(changed)} after `{sink.label}` saved {'it' if len(changed) == 1 else 'them'}: "
                       f"`backward()` on line {line} raises.",
                       related=[ctx.related(sink.node, f"`{sink.label}` is differentiated here, after the step")],
                       data={"lost": [display(s) for s in changed], "op": event.op})
        return ()
