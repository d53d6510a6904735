"""Candidates picked by topk indices: the scorer that ranked them gets no gradient through the picks."""
import torch
import torch.nn as nn

scorer = nn.Linear(4, 6)
table = nn.Embedding(6, 3)
x = torch.randn(2, 4)
picked = torch.topk(scorer(x), 2, dim=-1).indices  # CUT
loss = table(picked).pow(2).mean()
loss.backward()
