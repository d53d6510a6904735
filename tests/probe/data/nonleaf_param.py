import math

import torch

weights = torch.randn(8, 2, requires_grad=True) / math.sqrt(8)  # CUT
x = torch.randn(3, 8)
loss = (x @ weights).pow(2).sum()
loss.backward()
print(weights.grad)
