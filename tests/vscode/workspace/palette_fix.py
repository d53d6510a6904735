"""A stack of blocks that the optimizer never sees, and a perturbation that never requires grad."""
import torch
from torch import nn


class Stack(nn.Module):
    def __init__(self, width, depth):
        super().__init__()
        self.blocks = [nn.Linear(width, width) for _ in range(depth)]

    def forward(self, x):
        for block in self.blocks:
            x = block(x).relu()
        return x


model = Stack(8, 3)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
noise = torch.zeros(2, 8)
noise.require_grad = True
loss = model(torch.randn(2, 8) + noise).sum()
loss.backward()
optimizer.step()
