import torch
import torch.nn as nn


class Stack(nn.Module):
    def __init__(self, depth=2):
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.layers = [nn.Linear(8, 8) for _ in range(depth)]  # CUT
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        h = self.inp(x)
        for layer in self.layers:
            h = torch.relu(layer(h))
        return self.out(h)


stack = Stack()
opt = torch.optim.Adam(stack.parameters(), lr=1e-3)
loss = stack(torch.randn(6, 4)).pow(2).mean()
loss.backward()
opt.step()
