import torch
import torch.nn as nn


class NoisyLinear(nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        self.w_mu = nn.Parameter(torch.randn(d_out, d_in) * 0.1)
        self.w_sigma = nn.Parameter(torch.full((d_out, d_in), 0.05))
        self.bias = nn.Parameter(torch.zeros(d_out))

    def forward(self, x):
        w = torch.normal(self.w_mu, self.w_sigma)  # CUT
        return x @ w.t() + self.bias


layer = NoisyLinear(4, 2)
opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
loss = layer(torch.randn(8, 4)).pow(2).mean()
loss.backward()
opt.step()
