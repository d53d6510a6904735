import torch
import torch.nn as nn

torch.manual_seed(0)
mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
opt = torch.optim.Adam(mlp.parameters(), lr=1e-3)
x, y = torch.randn(32, 8), torch.randint(0, 2, (32,))
for step in range(3):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(mlp(x), y)
    loss.backward()
    opt.step()
    print(step, loss.item())
