import torch
import torch.nn as nn


class TwoStage(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(4, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        with torch.no_grad():  # CUT
            z = torch.relu(self.backbone(x))
        return self.head(z)


net = TwoStage()
opt = torch.optim.SGD(net.parameters(), lr=0.1)
out = net(torch.randn(3, 4))
loss = out.pow(2).sum()
loss.backward()
