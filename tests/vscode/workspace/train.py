"""A small regression model whose encoder never trains."""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(8, 16)
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        latent = self.encoder(x).relu()
        return self.head(latent.detach())


model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(32, 8)
y = torch.randn(32, 1)
loss = nn.functional.mse_loss(model(x), y)
loss.backward()
optimizer.step()
