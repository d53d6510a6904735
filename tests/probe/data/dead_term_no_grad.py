import torch
import torch.nn as nn

enc = nn.Linear(8, 4)
dec = nn.Linear(4, 8)
opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)
x = torch.randn(12, 8)
z = enc(x)
recon = nn.functional.mse_loss(dec(z), x)
with torch.no_grad():  # CUT
    sparsity = z.abs().mean()
loss = recon + 0.1 * sparsity
opt.zero_grad()
loss.backward()
opt.step()
