import torch
import torch.nn as nn

net = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 1))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
x, y = torch.randn(10, 6), torch.randn(10, 1)
pred = net(x)
mse = nn.functional.mse_loss(pred, y)
l2 = torch.tensor(sum(p.pow(2).sum().item() for p in net.parameters()))  # CUT
loss = mse + 1e-3 * l2
opt.zero_grad()
loss.backward()
opt.step()
