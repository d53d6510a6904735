import torch
import torch.nn as nn

scale = nn.Parameter(torch.tensor(0.5))
net = nn.Linear(3, 1)
opt = torch.optim.Adam(list(net.parameters()) + [scale], lr=0.01)
x = torch.randn(10, 3)
s = scale.item()  # CUT
loss = (net(x) * s).pow(2).mean()
loss.backward()
opt.step()
