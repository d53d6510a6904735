"""Layers held in `nn.ModuleList` / `nn.Sequential` attributes are followed into their own `forward`: a cut inside
a block of a stack is found where it is, named by the block's place, and checked against PyTorch."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source

STACK = """
import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc = nn.Linear(dim, dim)

    def forward(self, x):
        return {body}


class Stack(nn.Module):
    def __init__(self, dim=8):
        super().__init__()
        self.layers = {container}
        self.out = nn.Linear(dim, 1)

    def forward(self, x):
        {loop}
        return self.out(x)


model = Stack()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
model(torch.randn(4, 8)).sum().backward()
"""

CONTAINERS = {
    "list written out": ("nn.ModuleList([Block(dim), Block(dim)])",
                         "for layer in self.layers:\n            x = layer(x)"),
    "comprehension": ("nn.ModuleList([Block(dim) for _ in range(2)])",
                      "for i in range(len(self.layers)):\n            x = self.layers[i](x)"),
    "sequential": ("nn.Sequential(*[Block(dim) for _ in range(2)])", "x = self.layers(x)"),
}


def code(container: str, body: str) -> str:
    written, loop = CONTAINERS[container]
    return textwrap.dedent(STACK).format(body=body, container=written, loop=loop).lstrip("\n")


def findings(text: str) -> list:
    result = check_source(text, "example.py")
    assert not result.errors, result.errors
    return [(f.code, f.line, f.message) for f in result.findings if f.severity in ("error", "warning")]


def run(text: str) -> dict:
    torch = pytest.importorskip("torch")
    namespace: dict = {}
    exec(compile(text, "example.py", "exec"), namespace)  # noqa: S102 - our own example
    model = namespace["model"]
    return {name: p.grad for name, p in model.named_parameters()} | {"torch": torch}


@pytest.mark.parametrize("container", sorted(CONTAINERS))
def test_a_detach_inside_a_stacked_block_is_found_and_torch_agrees(container):
    text = code(container, "self.fc(x).detach()")
    found = findings(text)
    assert [(c, line) for c, line, _ in found] == [("GT105", 11)], found
    message = found[0][2]
    if container == "list written out":
        assert "`model.layers.0.fc` and `model.layers.1.fc` get no gradient" in message
    else:
        assert "`model.layers.*.fc` gets no gradient" in message
    grads = run(text)
    assert grads["layers.0.fc.weight"] is None and grads["layers.1.fc.weight"] is None
    assert grads["out.weight"] is not None


@pytest.mark.parametrize("container", sorted(CONTAINERS))
def test_a_stack_of_clean_blocks_stays_quiet(container):
    text = code(container, "torch.relu(self.fc(x)) + x")
    assert findings(text) == []
    grads = run(text)
    assert all(grads[f"layers.{i}.fc.weight"] is not None for i in (0, 1))
