"""A layer a constructor builds with a function of the file that returns a container of layers (`self.body =
sequential(conv, *blocks)`, the factory returning `nn.Sequential(*modules)` on one path and its one argument on
another) holds parameters: what cuts its output is reported, and an optimizer over it is not told it trains
nothing."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source

FACTORY = """
import torch
import torch.nn as nn


def sequential(*layers):
    if len(layers) == 1:
        return layers[0]
    return nn.Sequential(*layers)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        return self.head(self.body(x){cut})


net = Net()
optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
loss = net(torch.randn(5, 4)).pow(2).mean()
optimizer.zero_grad()
loss.backward()
optimizer.step()
"""


def findings(cut: str) -> list:
    result = check_source(textwrap.dedent(FACTORY).format(cut=cut).lstrip("\n"), "factory.py")
    return [(f.code, f.message) for f in result.findings]


def test_a_cut_after_a_factory_built_layer_names_it():
    found = findings(".detach()")
    assert [code for code, _ in found] == ["GT105"], found
    assert "body" in found[0][1]


def test_a_factory_built_layer_without_a_cut_is_quiet():
    assert findings("") == []


def test_the_cut_is_true_to_torch():
    pytest.importorskip("torch")
    namespace: dict = {}
    exec(compile(textwrap.dedent(FACTORY).format(cut=".detach()"), "factory.py", "exec"), namespace)  # noqa: S102
    net = namespace["net"]
    assert net.body[0].weight.grad is None and net.head.weight.grad is not None
