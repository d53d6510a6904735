import torch
import torch.nn as nn


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(6, 12)
        self.head = nn.Linear(12, 1)

    def forward(self, x):
        feats = torch.tanh(self.encoder(x))
        feats = feats.detach()  # CUT
        return self.head(feats)


model = Regressor()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(16, 6), torch.randn(16, 1)
loss = ((model(x) - y) ** 2).mean()
loss.backward()
opt.step()
