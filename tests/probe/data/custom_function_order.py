"""A custom autograd.Function whose backward returns its gradients in the wrong order."""
import torch
import torch.nn as nn


class ScaleClamp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, limit):
        ctx.limit = limit
        return x.clamp(-limit, limit)

    @staticmethod
    def backward(ctx, grad_output):
        grad_x = grad_output.clone()
        return None, grad_x  # CUT


layer = nn.Linear(3, 2)
out = ScaleClamp.apply(layer(torch.randn(4, 3)), 1.0)
out.sum().backward()
