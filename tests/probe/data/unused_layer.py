import torch
import torch.nn as nn


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(10, 16)
        self.aux = nn.Linear(16, 3)  # CUT
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(torch.relu(self.body(x)))


clf = Classifier()
opt = torch.optim.SGD(clf.parameters(), lr=0.1)
loss = nn.functional.cross_entropy(clf(torch.randn(4, 10)), torch.tensor([0, 1, 2, 0]))
loss.backward()
opt.step()
