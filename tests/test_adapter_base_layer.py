"""An adapter's `base_layer` (LoRA, DoRA: the pretrained layer they wrap) is frozen by design: DoRA detaches the
weight norm it computes from it (section 4.3 of the paper) and nothing is lost. Checked with torch: the base
weight has no gradient to lose, the adapter's own weights train; gradtrace says nothing."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source

torch = pytest.importorskip("torch", reason="torch is a dev dependency: scripts/test.sh installs it")

DORA = textwrap.dedent("""
    import torch
    import torch.nn as nn


    class DoraLinearLayer(nn.Module):
        def __init__(self, out_features):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(out_features))

        def forward(self, x, lora_A, lora_B, scaling, base_layer):
            # the extra output on top of the base layer's own (which the caller adds)
            weight = base_layer.weight
            lora_weight = lora_B.weight @ lora_A.weight
            weight_norm = (weight + scaling * lora_weight).norm(p=2, dim=1)
            weight_norm = weight_norm.detach()  # DoRA: the norm is a constant
            mag_norm_scale = (self.weight / weight_norm).view(1, -1)
            return mag_norm_scale * lora_B(lora_A(x)) * scaling
""").lstrip()

TRAINING = textwrap.dedent("""
    base_layer = nn.Linear(4, 3)
    base_layer.requires_grad_(False)  # what the adapter library does to the wrapped layer
    lora_A, lora_B = nn.Linear(4, 2, bias=False), nn.Linear(2, 3, bias=False)
    dora = DoraLinearLayer(3)
    opt = torch.optim.SGD([dora.weight, *lora_A.parameters(), *lora_B.parameters()], lr=0.1)
    dora(torch.randn(5, 4), lora_A, lora_B, 0.5, base_layer).sum().backward()
""")


def test_the_wrapped_base_layer_of_an_adapter_is_not_reported():
    namespace: dict = {}
    exec(compile(DORA + TRAINING, "<dora>", "exec"), namespace)
    assert namespace["base_layer"].weight.grad is None and namespace["dora"].weight.grad is not None
    assert namespace["lora_A"].weight.grad is not None
    assert check_source(DORA, "dora.py").findings == []
