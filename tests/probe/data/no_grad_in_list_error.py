import torch
import torch.nn as nn

model = nn.Linear(6, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
xs = [torch.randn(2, 6) for _ in range(3)]

with torch.no_grad():  # CUT
    outs = [model(x) for x in xs]
loss = torch.stack(outs).pow(2).mean()
opt.zero_grad()
loss.backward()
opt.step()
