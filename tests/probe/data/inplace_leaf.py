import torch

w = torch.randn(5, requires_grad=True)
x = torch.randn(5)
w.mul_(0.5)  # CUT
loss = (w * x).sum()
loss.backward()
