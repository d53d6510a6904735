import torch
import torch.nn as nn

net = nn.Linear(3, 1)
meta_opt = torch.optim.Adam(net.parameters(), lr=1e-3)
x, y = torch.randn(8, 3), torch.randn(8, 1)
for _ in range(2):
    inner = nn.functional.mse_loss(net(x), y)
    grads = torch.autograd.grad(inner, net.parameters())
    fast = [p - 0.01 * g for p, g in zip(net.parameters(), grads)]
    outer = nn.functional.mse_loss(x @ fast[0].t() + fast[1], y)
    meta_opt.zero_grad()
    outer.backward()
    meta_opt.step()
