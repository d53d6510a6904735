"""The model keeps its layers in a plain Python list inside main(): nn.Module registers none of them."""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, sizes=(4, 8, 1)):
        super().__init__()
        self.layers = [nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])]  # CUT

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def main():
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):
        loss = net(torch.randn(5, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


if __name__ == "__main__":
    main()
