"""Every layer of the model is created inside forward(): the optimizer is given no parameters at all."""
import torch
from torch import nn


class TinyConvNet(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.classes = classes

    def forward(self, images):
        features = nn.Conv2d(3, 4, kernel_size=3)(images).relu()  # CUT
        return nn.Linear(4, self.classes)(features.mean(dim=(2, 3)))


net = TinyConvNet()
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
for _ in range(2):
    loss = net(torch.randn(2, 3, 8, 8)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
