import torch
import torch.nn as nn

model = nn.Linear(6, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
batches = [(torch.randn(4, 6), torch.randn(4, 1)) for _ in range(3)]

total = 0.0
for x, y in batches:
    total += nn.functional.mse_loss(model(x), y).item()  # CUT
loss = torch.tensor(total / len(batches), requires_grad=True)
opt.zero_grad()
loss.backward()
opt.step()
