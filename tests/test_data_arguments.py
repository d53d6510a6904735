"""An argument whose name mentions a model but holds data about one (`encoder_attention_mask`, typed
`Optional[torch.Tensor]` or not; `generator: torch.Generator`) is not a trainable source: casting the mask to bool
cuts nothing that trains. Checked with torch: the mask has no gradient to lose and the layers train."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source

torch = pytest.importorskip("torch", reason="torch is a dev dependency: scripts/test.sh installs it")

MODEL = textwrap.dedent("""
    from typing import Optional

    import torch
    import torch.nn as nn


    class DiT(nn.Module):
        def __init__(self, d=4):
            super().__init__()
            self.proj = nn.Linear(d, d)
            self.pad = nn.Parameter(torch.zeros(d))

        def forward(self, hidden_states, encoder_hidden_states: torch.Tensor,
                    encoder_attention_mask: Optional[torch.Tensor] = None, decoder_mask=None):
            if encoder_attention_mask is not None:
                mask = encoder_attention_mask.bool().unsqueeze(-1)
                encoder_hidden_states = torch.where(mask, encoder_hidden_states, self.pad)
            if decoder_mask is not None:
                hidden_states = hidden_states * decoder_mask.long()
            return self.proj(hidden_states + encoder_hidden_states)


    def sample(decoder, latents, generator: Optional[torch.Generator] = None):
        noise = torch.randn(latents.shape, generator=generator)
        return decoder(latents + noise)


""").lstrip()  # a model file, as a library ships it: each class is analysed on its own

TRAINING = textwrap.dedent("""
    model = DiT()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    out = model(torch.randn(2, 3, 4), torch.randn(2, 3, 4), mask, torch.ones(2, 3, 1))
    out.sum().backward()
""")


def test_masks_and_generators_named_after_a_model_are_not_sources():
    namespace: dict = {}
    exec(compile(MODEL + TRAINING, "<dit>", "exec"), namespace)
    assert not namespace["mask"].requires_grad and namespace["model"].pad.grad is not None
    assert namespace["model"].proj.weight.grad is not None
    assert check_source(MODEL, "dit.py").findings == []
