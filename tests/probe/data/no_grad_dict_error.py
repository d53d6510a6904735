import torch
import torch.nn as nn

model = nn.Linear(4, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
views = {"a": torch.randn(3, 4), "b": torch.randn(3, 4)}

cache = {}
with torch.no_grad():  # CUT
    for name, v in views.items():
        cache[name] = model(v)
loss = sum(out.pow(2).mean() for out in cache.values())
opt.zero_grad()
loss.backward()
opt.step()
