"""A classifier whose head trains and whose encoder never does: a .detach() between them."""
import torch
import torch.nn as nn


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        features = self.encoder(x)
        frozen = features.detach()
        return self.head(frozen)


model = Classifier()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):
    x = torch.randn(8, 16)
    target = torch.randint(0, 4, (8,))
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
