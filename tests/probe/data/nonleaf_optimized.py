"""A weight made non-leaf by a dtype conversion after requires_grad=True, then given to an optimizer."""
import torch

w = torch.zeros(3, 1, requires_grad=True).double()  # CUT
opt = torch.optim.Adam([w], lr=0.1)
x = torch.randn(8, 3, dtype=torch.float64)
(x @ w).pow(2).mean().backward()
opt.step()
