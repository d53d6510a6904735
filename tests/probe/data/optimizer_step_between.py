import torch
import torch.nn as nn

net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
out = net(torch.randn(8, 2))
first = out.pow(2).mean()
second = out.abs().mean()
first.backward(retain_graph=True)
opt.step()  # CUT
second.backward()
