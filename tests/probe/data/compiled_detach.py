import torch
import torch.nn as nn

enc = nn.Linear(3, 3)
head = nn.Linear(3, 1)


@torch.compile
def features(x):
    return enc(x).detach()  # CUT


loss = head(features(torch.randn(4, 3))).sum()
loss.backward()
