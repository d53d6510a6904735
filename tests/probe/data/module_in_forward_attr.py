import torch
import torch.nn as nn


class Classifier(nn.Module):
    def __init__(self, dim=12):
        super().__init__()
        self.encoder = nn.Linear(dim, 16)

    def forward(self, x):
        h = torch.tanh(self.encoder(x))
        self.proj = nn.Linear(16, 3)  # CUT
        return self.proj(h)


def main():
    clf = Classifier()
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    for _ in range(2):
        logits = clf(torch.randn(6, 12))
        loss = nn.functional.cross_entropy(logits, torch.randint(0, 3, (6,)))
        opt.zero_grad()
        loss.backward()
        opt.step()


main()
