import torch
import torch.nn as nn


class Scaler(nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = torch.ones(3, requires_grad=True) * 0.5  # CUT
        self.fc = nn.Linear(3, 1)

    def forward(self, x):
        return self.fc(x * self.gain)


scaler = Scaler()
opt = torch.optim.SGD(scaler.parameters(), lr=0.1)
scaler(torch.randn(6, 3)).pow(2).mean().backward()
opt.step()
