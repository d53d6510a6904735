"""An adversarial perturbation whose gradient is never computed."""
import torch

images = torch.rand(4, 3, 8, 8)
delta = torch.zeros_like(images)
delta.require_grad = True
loss = (images + delta).pow(2).mean()
loss.backward()
