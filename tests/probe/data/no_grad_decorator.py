import torch
import torch.nn as nn


@torch.no_grad()  # CUT
def normalise(h):
    return (h - h.mean()) / (h.std() + 1e-5)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        return self.out(normalise(self.enc(x)))


net = Net()
net(torch.randn(5, 4)).sum().backward()
