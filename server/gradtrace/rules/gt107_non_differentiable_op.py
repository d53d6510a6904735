from gradtrace.rules._torch_cut import report_dead_cuts
from gradtrace.rules.base import Invalid, Rule, Truth


class NonDifferentiableOp(Rule):
    code = "GT107"
    name = "non-differentiable-op"
    summary = "argmax/argmin/indices, comparisons, or round/floor/ceil/sign on the loss path."
    docs = """
    ## What it does
    Finds operations with no useful gradient between trainable parameters and the loss: indices
    (`argmax`, `argmin`, `topk(...).indices`, `max(dim)[1]`, `one_hot(argmax)`), comparisons and masks
    (`pred > 0.5`, `a == b`), step functions (`round`, `floor`, `ceil`, `sign`, `trunc`), and draws:
    `dist.sample()` of a `torch.distributions` distribution (made under no_grad; `rsample()` is the
    differentiable one) and `torch.normal(mu, std)`, `torch.bernoulli(p)`, `torch.poisson(rate)`, whose
    backward gives their arguments a zero gradient. A `sample()` whose distribution reaches the loss through
    `log_prob` (REINFORCE) stays quiet; `log_prob` of the distribution's own `rsample()` (a `Normal`,
    `Laplace`, `Cauchy` or `MultivariateNormal`) does not: the draw is `loc + scale * eps`, so its log density
    does not depend on the loc, whose parameters get a zero gradient (use `sample()`, or detach the draw).

    ## Why is this bad?
    Indices and booleans carry no gradient at all (`None`; if nothing else in the loss requires grad,
    `backward()` raises). Step functions have a gradient of zero almost everywhere, so the parameters
    before them get a zero gradient and never move. Using the *values* (`max(dim).values`,
    `topk(...).values`) or indexing a tensor with the indices (`z[idx]`) is differentiable and fine.
    With nothing else requiring grad, the error reads "element 0 of tensors does not require grad".

    ## Example
    ```python
    w_bin = torch.sign(self.weight)
    return F.linear(x, w_bin, self.bias)
    ```

    ## Use instead
    ```python
    w_bin = self.weight + (torch.sign(self.weight) - self.weight).detach()  # straight-through
    return F.linear(x, w_bin, self.bias)
    ```

    ## Fix safety
    No automatic fix: choose a differentiable surrogate (softmax weights, Gumbel-softmax, a sigmoid
    instead of a threshold) or a straight-through estimator.
    """
    valid = (
        """
        import torch
        import torch.nn as nn

        net = nn.Linear(4, 3)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        z = net(torch.randn(4))
        idx = z.argmax()
        loss = -z[idx]
        loss.backward()
        acc = (z.argmax() == 1).float()
        """,
        """
        import torch
        import torch.nn as nn

        net = nn.Linear(4, 6)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        h = net(torch.randn(2, 4))
        top = h.topk(2, dim=1).values
        best, _ = h.max(dim=1)
        loss = top.sum() + best.sum()
        loss.backward()
        """,
        """
        import torch
        import torch.nn as nn
        from torch.distributions import Categorical

        policy = nn.Linear(4, 3)
        opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
        dist = Categorical(logits=policy(torch.randn(8, 4)))
        actions = dist.sample()
        rewards = (actions == 1).float()
        loss = -(dist.log_prob(actions) * rewards).mean()
        loss.backward()
        """,
        """
        import torch
        import torch.nn as nn
        from torch.distributions import Normal

        actor = nn.Linear(4, 2)
        critic = nn.Linear(6, 1)
        log_std = nn.Parameter(torch.zeros(2))
        opt = torch.optim.Adam(list(actor.parameters()) + [log_std], lr=1e-2)
        critic_opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
        obs = torch.randn(16, 4)
        dist = Normal(actor(obs), log_std.exp())
        action = dist.rsample()
        q = critic(torch.cat([obs, action], -1)).squeeze(-1)
        loss = (0.2 * dist.log_prob(action).sum(-1) - q).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        """,
        """
        import torch
        import torch.nn as nn


        def soft_dice(pr, gt, threshold=None):
            if threshold is not None:
                pr = (pr > threshold).float()
            inter = (pr * gt).sum()
            return 1 - 2 * inter / (pr.sum() + gt.sum() + 1e-7)


        class DiceLoss(nn.Module):
            def __init__(self, threshold=None):
                super().__init__()
                self.threshold = threshold

            def forward(self, logits, target):
                return soft_dice(torch.sigmoid(logits), target, threshold=self.threshold)


        net = nn.Conv2d(3, 1, 3, padding=1)
        criterion = DiceLoss()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        loss = criterion(net(torch.randn(2, 3, 8, 8)), (torch.rand(2, 1, 8, 8) > 0.5).float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn


            def soft_dice(pr, gt, threshold=None):
                if threshold is not None:
                    pr = (pr > threshold).float()  # expect: GT107
                inter = (pr * gt).sum()
                return 1 - 2 * inter / (pr.sum() + gt.sum() + 1e-7)


            class DiceLoss(nn.Module):
                def __init__(self, threshold=None):
                    super().__init__()
                    self.threshold = threshold

                def forward(self, logits, target):
                    return soft_dice(torch.sigmoid(logits), target, threshold=self.threshold)


            net = nn.Conv2d(3, 1, 3, padding=1)
            criterion = DiceLoss(threshold=0.5)
            optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
            loss = criterion(net(torch.randn(2, 3, 8, 8)), (torch.rand(2, 1, 8, 8) > 0.5).float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            """,
            truth=Truth(raises=("RuntimeError", "does not require grad")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            from torch.distributions import Normal


            class Policy(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.mu = nn.Linear(4, 2)
                    self.log_std = nn.Parameter(torch.zeros(2))

                def forward(self, obs):
                    dist = Normal(self.mu(obs), self.log_std.exp())
                    action = dist.rsample()
                    return action, dist.log_prob(action).sum(-1)  # expect: GT107


            policy = Policy()
            opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
            action, log_prob = policy(torch.randn(16, 4))
            reward = -(action.detach() - 1.0).pow(2).sum(-1)
            loss = -(log_prob * reward).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            """,
            truth=Truth(grads={"policy.mu.weight": "zero"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            from torch.nn.modules.loss import _Loss


            class HardDice(_Loss):
                def forward(self, pred, target):
                    hard = (torch.sigmoid(pred) > 0.5).float()  # expect: GT107
                    return 1 - (2 * (hard * target).sum() + 1) / (hard.sum() + target.sum() + 1)


            model = nn.Linear(4, 1)
            loss = HardDice()(model(torch.randn(8, 4)), torch.ones(8, 1))
            loss.backward()
            """,
            truth=Truth(raises=("RuntimeError", "does not require grad")),
        ),
        Invalid(
            """
            import torch

            w = torch.randn(4, 3, requires_grad=True)
            b = torch.zeros(3, requires_grad=True)
            x = torch.randn(5, 4)
            out = x @ torch.sign(w) + b  # expect: GT107
            out.pow(2).mean().backward()
            """,
            truth=Truth(grads={"w": "zero"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            import torch.nn.functional as F

            net = nn.Linear(4, 3)
            opt = torch.optim.SGD(net.parameters(), lr=0.1)
            logits = net(torch.randn(6, 4))
            pred = logits.argmax(1).float()  # expect: GT107
            loss = F.l1_loss(pred, torch.ones(6))
            loss.backward()
            """,
            truth=Truth(raises=("RuntimeError", "does not require grad")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            from torch.distributions import Normal


            class Actor(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.mu = nn.Linear(4, 2)
                    self.log_std = nn.Linear(4, 2)

                def forward(self, obs):
                    dist = Normal(self.mu(obs), self.log_std(obs).exp())
                    return torch.tanh(dist.sample())  # expect: GT107


            actor, critic = Actor(), nn.Linear(6, 1)
            opt = torch.optim.Adam(actor.parameters(), lr=1e-3)
            obs = torch.randn(8, 4)
            loss = -critic(torch.cat([obs, actor(obs)], dim=1)).mean()
            loss.backward()
            """,
            truth=Truth(grads={"actor.mu.weight": "none", "actor.log_std.weight": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class NoisyLinear(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.w_mu = nn.Parameter(torch.randn(3, 4) * 0.1)
                    self.w_sigma = nn.Parameter(torch.full((3, 4), 0.05))

                def forward(self, x):
                    w = torch.normal(self.w_mu, self.w_sigma)  # expect: GT107
                    return x @ w.t()


            layer = NoisyLinear()
            layer(torch.randn(5, 4)).pow(2).mean().backward()
            """,
            truth=Truth(grads={"layer.w_mu": "zero", "layer.w_sigma": "zero"}),
        ),
    )

    def check(self, ctx):
        report_dead_cuts(ctx, ("index", "compare", "zero", "own_draw"))
        return ()
