import torch

target = torch.randn(4)
guess = torch.zeros(4)
guess.requires_gradient = True  # CUT
loss = ((guess - target) ** 2).sum()
loss.backward()
