"""A critic trained with a gradient penalty (autograd.grad with create_graph=True inside the loss);
its learned penalty weight is read with .item(), so it never trains."""
import torch
import torch.nn as nn


class Critic(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
        self.log_lam = nn.Parameter(torch.tensor(0.0))

    def forward(self, x):
        return self.net(x)


critic = Critic()
opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
for _ in range(2):
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    mix = (0.5 * real + 0.5 * fake).requires_grad_(True)
    grads = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)[0]
    lam = critic.log_lam.exp().item()  # CUT
    penalty = lam * ((grads.norm(dim=1) - 1) ** 2).mean()
    loss = critic(fake).mean() - critic(real).mean() + penalty
    opt.zero_grad()
    loss.backward()
    opt.step()
