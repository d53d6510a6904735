import torch
import torch.nn as nn

scorer = nn.Linear(6, 4)
table = nn.Embedding(4, 3)
x = torch.randn(5, 6)
idx = scorer(x).argmax(dim=-1)  # CUT
loss = table(idx).sum()
loss.backward()
