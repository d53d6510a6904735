import torch

# a weight that should train
label, w = "🐍", torch.zeros(3, require_grad=True)
x = torch.randn(3)
loss = (w * x).sum()
loss.backward()
