"""GT122 claims an all-zero gradient: only for what reaches the output through the product with zero alone. A
ControlNet-style fuser starts an accumulator at `sample * 0.0` and adds `sample` back itself: the convolution that
made `sample` trains (checked with torch), and nothing is reported. An auxiliary head that enters the loss only as
`0 * aux(x).sum()` gets exactly zero, and is reported."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source

torch = pytest.importorskip("torch", reason="torch is a dev dependency: scripts/test.sh installs it")

FUSER = textwrap.dedent("""
    import torch
    import torch.nn as nn


    class Fuser(nn.Module):
        def __init__(self, d=4):
            super().__init__()
            self.conv_in = nn.Conv2d(3, d, 1)
            self.proj = nn.Linear(d, d)
            self.out = nn.Conv2d(d, d, 1)

        def forward(self, sample, conditions, x):
            sample = self.conv_in(sample)
            fuser = sample * 0.0
            for idx, condition in enumerate(conditions):
                alpha = self.proj(x[:, idx]).unsqueeze(-1).unsqueeze(-1)
                fuser += condition + alpha
            sample = sample + fuser
            return self.out(sample)


    model = Fuser()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = model(torch.randn(2, 3, 5, 5), [torch.randn(2, 4, 5, 5)], torch.randn(2, 1, 4))
    out.sum().backward()
""").lstrip()

AUX = textwrap.dedent("""
    import torch
    import torch.nn as nn

    model = nn.Linear(3, 1)
    aux = nn.Linear(3, 1)
    opt = torch.optim.SGD(list(model.parameters()) + list(aux.parameters()), lr=0.1)
    x = torch.randn(4, 3)
    loss = model(x).pow(2).mean() + 0 * aux(x).sum()
    loss.backward()
""").lstrip()


def run(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<example>", "exec"), namespace)
    return namespace


def test_a_zero_started_accumulator_leaves_the_layer_training_and_is_not_reported():
    model = run(FUSER)["model"]
    assert model.conv_in.weight.grad is not None and bool(model.conv_in.weight.grad.abs().sum() > 0)
    assert check_source(FUSER, "fuser.py").findings == []


def test_a_term_that_reaches_the_loss_only_times_zero_is_reported():
    aux = run(AUX)["aux"]
    assert bool((aux.weight.grad == 0).all())
    findings = check_source(AUX, "aux.py").findings
    assert [(f.code, f.line) for f in findings] == [("GT122", 8)]
    assert "`aux` an all-zero gradient" in findings[0].message
