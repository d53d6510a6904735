import torch
import torch.nn as nn

model = nn.Linear(5, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
losses = []
for _ in range(3):
    x, y = torch.randn(8, 5), torch.randn(8, 1)
    losses.append(nn.functional.mse_loss(model(x), y).item())  # CUT
loss = torch.tensor(sum(losses) / len(losses))
opt.zero_grad()
loss.backward()
opt.step()
