import torch

a = torch.randn(3, requires_grad=True)
b = torch.randn(3, requires_grad=True)
y = (a * 2).sum()
ga, gb = torch.autograd.grad(y, [a, b], allow_unused=True)  # CUT
