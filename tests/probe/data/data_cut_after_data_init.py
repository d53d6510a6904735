"""The embedding is initialised through `.data` (fine); forward sums its rows through NumPy and rebuilds a tensor: cut."""
import numpy as np
import torch
from torch import nn


class Bag(nn.Module):
    def __init__(self, vocab=20, dim=4):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.out = nn.Linear(dim, 1)
        self.emb.weight.data.uniform_(-0.1, 0.1)

    def forward(self, idx):
        summed = [np.sum(row.data.numpy(), axis=0).tolist() for row in self.emb(idx)]  # CUT
        return self.out(torch.FloatTensor(summed))


model = Bag()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(2):
    loss = model(torch.randint(0, 20, (5, 3))).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
