import torch.nn as nn


class Tagger(nn.Module):
    def __init__(self, vocab, dim=8):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = nn.GRU(dim, dim, batch_first=True)
        self.proj = nn.Linear(dim, 4)

    def forward(self, tokens):
        h, _ = self.rnn(self.embed(tokens))
        return self.proj(h.detach())  # CUT


def make():
    return Tagger(vocab=50)
