import torch
import torch.nn as nn

encoder = nn.Linear(6, 6)
head = nn.Linear(6, 1)
opt = torch.optim.SGD(list(encoder.parameters()) + list(head.parameters()), lr=0.1)
xs = [torch.randn(2, 6) for _ in range(3)]

feats = []
with torch.no_grad():  # CUT
    for x in xs:
        feats.append(encoder(x))
loss = head(torch.cat(feats)).pow(2).mean()
opt.zero_grad()
loss.backward()
opt.step()
