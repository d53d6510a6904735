"""An in-place unsqueeze_ on a ReLU output that backward needs, in a model whose own in-place ReLU is harmless."""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)  # on a convolution's output, which backward does not need: fine
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        h = self.act(self.conv(x))
        g = torch.relu(self.conv2(h)).unsqueeze_(1)  # CUT
        return g.sum(1)


net = Net()
opt = torch.optim.SGD(net.parameters(), lr=0.1)
for _ in range(2):
    loss = net(torch.randn(2, 3, 8, 8)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
