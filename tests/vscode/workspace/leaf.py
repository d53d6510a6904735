"""Updating a trainable leaf in place raises at run time."""
import torch

w = torch.zeros(3, requires_grad=True)
w.add_(1.0)
loss = (w * 2).sum()
loss.backward()
