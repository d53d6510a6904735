import torch
import torch.nn as nn

model = nn.Linear(8, 2)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.randn(16, 8), torch.randn(16, 2)
pred = model(x)
fit = nn.functional.mse_loss(pred, y)
smooth = 0.1 * pred.diff(dim=0).abs().mean()
target = pred.detach().mean()
consistency = (pred.mean() - target) ** 2
loss = fit + smooth + consistency + 0.0 * torch.ones(())
opt.zero_grad()
loss.backward()
opt.step()
