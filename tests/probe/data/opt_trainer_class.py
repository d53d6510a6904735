import torch
import torch.nn as nn


class Trainer:
    def __init__(self):
        self.model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        self.opt = torch.optim.RMSprop(self.model.parameters(), lr=1e-3)

    def step(self, x, y):
        loss = nn.functional.mse_loss(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()


def run():
    trainer = Trainer()
    for _ in range(3):
        trainer.step(torch.randn(16, 4), torch.randn(16, 1))


if __name__ == "__main__":
    run()
