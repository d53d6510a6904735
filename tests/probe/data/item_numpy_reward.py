"""A policy-gradient loss summed from .item() values weighted by NumPy rewards: a numpy.float64 reaches backward()."""
import numpy as np
import torch
import torch.nn as nn

policy = nn.Linear(4, 3)
opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
rewards = np.array([1.0, 0.5, 0.25])

loss = 0
for t, reward in enumerate(rewards):
    log_probs = torch.log_softmax(policy(torch.randn(1, 4)), dim=1)
    loss -= log_probs[0, t].item() * reward  # CUT
opt.zero_grad()
loss.backward()
opt.step()
