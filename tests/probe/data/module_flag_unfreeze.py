"""Freeze a backbone for the first step, then "unfreeze" it by setting requires_grad on the module."""
import torch
import torch.nn as nn

model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
backbone, head = model[0], model[2]
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(2):
    if step == 0:
        for p in backbone.parameters():
            p.requires_grad = False
    else:
        backbone.requires_grad = True  # CUT
    opt.zero_grad()
    model(torch.randn(5, 4)).pow(2).mean().backward()
    opt.step()
