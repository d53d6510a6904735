import torch
import torch.nn as nn

model = nn.Linear(5, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
batches = [(torch.randn(8, 5), torch.randn(8, 1)) for _ in range(2)]


def run():
    epoch_loss = 0
    for x, y in batches:
        epoch_loss += nn.functional.l1_loss(model(x), y).item()  # CUT
    opt.zero_grad()
    epoch_loss.backward()
    opt.step()


run()
