import torch
import torch.nn as nn

lin = nn.Linear(4, 4)
x = torch.randn(2, 4)
h = torch.exp(lin(x))
h.add_(1.0)  # CUT
loss = h.sum()
loss.backward()
