"""A function called with many shapes of configuration (a model zoo's entry points, each with its own kwargs)
shares one widened summary after the first few: what the zoo reports does not depend on how many entry
points it has."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.analysis.core.interpreter import MAX_SHAPES_PER_FUNCTION
from gradtrace.engine import check_source

ZOO = """
import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc = nn.Linear(dim, dim)

    def forward(self, x):
        return self.fc(x).detach()


class Wide(Block):
    pass


class Net(nn.Module):
    def __init__(self, block=Block, depth=2, dim=8, act="relu", scale=(1, 2)):
        super().__init__()
        self.blocks = nn.ModuleList([block(dim) for _ in range(depth)])
        self.out = nn.Linear(dim, 1)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.out(x)


def _create(variant, pretrained=False, **kwargs):
    model = Net(**kwargs)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, kwargs.get("dim", 8))).sum().backward()
    opt.step()
    return model
"""

OPTIONS = [("depth", ["1", "2", "3", "4"]), ("act", ['"relu"', '"gelu"']), ("block", ["Block", "Wide"]),
           ("scale", ["(1, 2)", "(2, 3)", "(1,)"])]


def zoo(entry_points: int) -> str:
    parts = [textwrap.dedent(ZOO).lstrip("\n")]
    for i in range(entry_points):
        chosen = [f"{key}={values[i % len(values)]}" for bit, (key, values) in enumerate(OPTIONS) if i >> bit & 1]
        parts.append(f"\n\ndef net_{i}(pretrained=False, **kwargs):\n"
                     f"    model_args = dict({', '.join(chosen)})\n"
                     f"    return _create('net_{i}', pretrained, **dict(model_args, **kwargs))\n")
    return "".join(parts)


def findings(text: str) -> list:
    result = check_source(text, "zoo.py")
    assert not result.errors, result.errors
    return [(f.code, f.line, f.message) for f in result.findings]


def test_a_zoo_reports_the_same_whatever_its_number_of_entry_points():
    small = findings(zoo(2))
    assert [(c, line) for c, line, _ in small] == [("GT105", 11)], small
    assert findings(zoo(4 * MAX_SHAPES_PER_FUNCTION)) == small


def test_the_zoo_bug_is_real():
    torch = pytest.importorskip("torch")
    namespace: dict = {}
    exec(compile(zoo(3), "zoo.py", "exec"), namespace)  # noqa: S102 - our own example
    model = namespace["net_2"]()
    assert model.blocks[0].fc.weight.grad is None and model.out.weight.grad is not None
    assert isinstance(model.blocks[0].fc.weight, torch.nn.Parameter)
