import torch
import torch.nn as nn

net = nn.Linear(3, 2)
out = net(torch.randn(5, 3))
l_a, l_b = out[:, 0].mean(), out[:, 1].pow(2).mean()
total = torch.Tensor([l_a.item(), l_b.item()]).sum()  # CUT
total.backward()
