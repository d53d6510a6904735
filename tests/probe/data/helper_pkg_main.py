import torch
from helper_pkg_mod import Encoder

enc = Encoder()
loss = enc(torch.randn(2, 3)).sum()
loss.backward()
