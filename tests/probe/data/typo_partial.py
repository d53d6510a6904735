"""One of two tensors meant to train has requires_grad misspelt: training runs, it never moves."""
import torch

speed = torch.tensor(4.0, requires_grad=True)
drag = torch.tensor(0.1)
drag.requries_grad = True  # CUT
opt = torch.optim.SGD([speed], lr=0.01)
for _ in range(2):
    distance = speed * 2.0 - drag * speed ** 2
    loss = (distance - 15.0) ** 2
    opt.zero_grad()
    loss.backward()
    opt.step()
