import torch
import torch.nn as nn


class Tower(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.stages = [[nn.Linear(8, 8) for _ in range(2)] for _ in range(2)]  # CUT

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            for layer in stage:
                x = torch.relu(layer(x))
        return x.sum(dim=1)


model = Tower()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss = model(torch.randn(5, 4)).pow(2).mean()
opt.zero_grad()
loss.backward()
opt.step()
