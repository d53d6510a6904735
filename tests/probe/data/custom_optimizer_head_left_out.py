"""A project optimizer class built in main() over the encoder alone: the classifier head never trains."""
import torch
import torch.nn as nn
from torch.optim import Optimizer


class ScaledSGD(Optimizer):
    def __init__(self, params, lr=0.1, scale=1.0):
        super().__init__(params, {"lr": lr, "scale": scale})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"] * group["scale"])


def main():
    encoder = nn.Linear(4, 8)
    head = nn.Linear(8, 3)
    opt = ScaledSGD(encoder.parameters(), lr=0.05)  # CUT
    for _ in range(3):
        loss = nn.functional.cross_entropy(head(encoder(torch.randn(6, 4))), torch.randint(0, 3, (6,)))
        opt.zero_grad()
        loss.backward()
        opt.step()


if __name__ == "__main__":
    main()
