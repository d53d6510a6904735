"""A parameter made with `requires_grad=False` (the expert bias of aux-loss-free MoE routing, updated by hand outside
backward) is meant never to train: a cut on its path is not reported. The same parameter left trainable is."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source

torch = pytest.importorskip("torch", reason="torch is a dev dependency: scripts/test.sh installs it")

ROUTER = textwrap.dedent("""
    import torch
    import torch.nn as nn


    class Router(nn.Module):
        def __init__(self, n=4):
            super().__init__()
            self.gate = nn.Linear(4, n)
            self.expert_bias = nn.Parameter(torch.zeros(n), requires_grad=False)

        def forward(self, x):
            scores = self.gate(x).sigmoid()
            _, chosen = torch.topk(scores + self.expert_bias, k=2, dim=1)
            return scores.gather(1, chosen)


    model = Router()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(3, 4)).sum().backward()
""").lstrip()

TRAINABLE = ROUTER.replace("torch.zeros(n), requires_grad=False", "torch.zeros(n)")


def run(source: str):
    namespace: dict = {}
    exec(compile(source, "<router>", "exec"), namespace)
    return namespace["model"]


def test_a_frozen_parameter_behind_an_index_cut_is_not_reported():
    model = run(ROUTER)
    assert not model.expert_bias.requires_grad and model.gate.weight.grad is not None
    assert check_source(ROUTER, "router.py").findings == []


def test_the_same_parameter_trainable_gets_no_gradient_and_is_reported():
    model = run(TRAINABLE)
    assert model.expert_bias.requires_grad and model.expert_bias.grad is None
    findings = check_source(TRAINABLE, "router.py").findings
    assert [f.code for f in findings] == ["GT107"]
    assert findings[0].message.startswith("`model.expert_bias` gets no gradient")
