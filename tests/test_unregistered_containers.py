"""GT115 against PyTorch: a Python list of layers is missing from `parameters()` unless the module registers each
item itself (`self.add_module(str(i), layer)`, as transformers' MaskFormer blocks do); a dict of loss modules has no
parameters to miss. Both stay quiet; a plain list of layers is still reported."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source

torch = pytest.importorskip("torch", reason="torch is a dev dependency: scripts/test.sh installs it")

SOURCE = textwrap.dedent("""
    import torch
    import torch.nn as nn


    class PredictionBlock(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.layers = [nn.Linear(d, d), nn.ReLU()]
            for i, layer in enumerate(self.layers):
                self.add_module(str(i), layer)

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x


    class WithLosses(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.head = nn.Linear(d, 2)
            self.loss_fcts = {"l1": nn.SmoothL1Loss(reduction="none"), "ce": nn.CrossEntropyLoss()}

        def forward(self, x, y):
            return self.loss_fcts["ce"](self.head(x), y)


    class Plain(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.layers = [nn.Linear(d, d), nn.ReLU()]

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x
""").lstrip()


def parameter_names(cls_name: str) -> set[str]:
    namespace: dict = {}
    exec(compile(SOURCE, "<blocks>", "exec"), namespace)
    return {name for name, _ in namespace[cls_name](3).named_parameters()}


def test_what_pytorch_registers():
    assert parameter_names("PredictionBlock") == {"0.weight", "0.bias"}  # registered one by one
    assert parameter_names("WithLosses") == {"head.weight", "head.bias"}  # the losses have none
    assert parameter_names("Plain") == set()  # the list's Linear is lost


def test_only_the_plain_list_is_reported():
    findings = check_source(SOURCE, "blocks.py").findings
    plain_line = SOURCE.splitlines().index("class Plain(nn.Module):") + 4
    assert [(f.code, f.line) for f in findings] == [("GT115", plain_line)]
    assert "`Plain.parameters()` leaves them out" in findings[0].message
