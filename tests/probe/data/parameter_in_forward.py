"""A masked weight re-wrapped in nn.Parameter inside forward: the real weight is cut off."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(2, 3))
        self.bias = nn.Parameter(torch.zeros(2))
        self.register_buffer("mask", torch.ones(2, 3))

    def forward(self, x):
        w = nn.Parameter(self.weight * self.mask)  # CUT
        return F.linear(x, w, self.bias)


layer = Masked()
layer(torch.randn(4, 3)).pow(2).mean().backward()
