import torch.nn as nn


class HeadFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 3)
        self.body = nn.Linear(5, 16)
        self.spare = nn.Linear(16, 16)  # CUT

    def forward(self, x):
        return self.head(self.body(x).relu())
