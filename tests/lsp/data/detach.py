import torch
import torch.nn as nn

encoder, head = nn.Linear(4, 8), nn.Linear(8, 1)
opt = torch.optim.SGD(list(encoder.parameters()) + list(head.parameters()), lr=0.1)
x, y = torch.randn(2, 4), torch.randn(2, 1)
label, feats = "😋🐍", encoder(x).detach()
loss = ((head(feats) - y) ** 2).mean()
loss.backward()
opt.step()
