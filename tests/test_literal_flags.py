"""String flags decide branches: a layer built with `activation="relu"` takes its `relu` branch and one built with
`activation="none"` does not, so an in-place add after it is reported for the first only. A string that is only
passed along (a model zoo's variant name) is just a string: calls that differ in it share one summary."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.analysis.core.interpreter import Interpreter
from gradtrace.engine import check_source

LAYERS = """
import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvNorm(nn.Module):
    def __init__(self, cin, cout, activation="relu"):
        super().__init__()
        self.activation = activation
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = self.norm(self.conv(x))
        if self.activation {test}:
            return F.relu(x)
        return x


class ResPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.shortcut = ConvNorm(3, 8{shortcut})
        self.body = ConvNorm(3, 8{body})

    def forward(self, x):
        shortcut = self.shortcut(x)
        x = self.body(x)
        x += shortcut
        return x


ResPath()(torch.randn(2, 3, 8, 8)).mean().backward()
"""

CASES = [  # (test in forward, shortcut's arguments, body's arguments, does the body end in relu?)
    ('== "relu"', ', activation="none"', "", True),
    ('== "relu"', "", ', activation="none"', False),
    ('in ("relu", "gelu")', ', activation="none"', ', activation="gelu"', True),
    ('!= "none"', "", ', activation="none"', False),
    ('is not None', "", ", activation=None", False),
]


def source(test: str, shortcut: str, body: str) -> str:
    return textwrap.dedent(LAYERS).format(test=test, shortcut=shortcut, body=body).lstrip("\n")


@pytest.mark.parametrize("test, shortcut, body, saved", CASES)
def test_the_flag_a_layer_was_built_with_decides_its_branch(test, shortcut, body, saved):
    text = source(test, shortcut, body)
    add = text.splitlines().index("        x += shortcut") + 1
    found = [(f.code, f.line) for f in check_source(text, "respath.py").findings]
    assert found == ([("GT121", add)] if saved else []), found


@pytest.mark.parametrize("test, shortcut, body, saved", CASES)
def test_the_flags_are_true_to_torch(test, shortcut, body, saved):
    pytest.importorskip("torch")
    code = compile(source(test, shortcut, body), "respath.py", "exec")
    if saved:
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            exec(code, {})  # noqa: S102 - our own example
    else:
        exec(code, {})  # noqa: S102 - our own example


ZOO = """
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, depth=2):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return self.fc(x)


def _create(variant, **kwargs):
    model = Net(**kwargs)
    print("built", variant)
    return model
"""


def summaries_of(text: str, name: str) -> int:
    counted = []
    original = Interpreter.summarise

    def counting(self, func, *args, **kwargs):
        if getattr(func.node, "name", None) == name:
            counted.append(func)
        return original(self, func, *args, **kwargs)

    Interpreter.summarise = counting
    try:
        check_source(text, "zoo.py")
    finally:
        Interpreter.summarise = original
    return len(counted)


def test_a_variant_name_passed_along_does_not_split_summaries():
    entry_points = "".join(f'\n\ndef net_{i}(**kwargs):\n    return _create("net_{i}", **kwargs)\n' for i in range(5))
    assert summaries_of(textwrap.dedent(ZOO) + entry_points, "_create") == 1
