import torch

w = torch.randn(4, 3, requires_grad=True)
b = torch.zeros(3, requires_grad=True)
x = torch.randn(8, 4)
h = x @ w.data  # CUT
loss = (h + b).pow(2).mean()
loss.backward()
