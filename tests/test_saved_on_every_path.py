"""GT121 claims `backward()` raises: only when the tensor written in place was saved for backward on every path that
can reach the write. DETR's box head (`relu(layer(x)) if i < n - 1 else layer(x)` in a loop, then `x[..., :2] += r`)
ends on an unsaved linear output and trains; the same head with `relu` on every layer raises."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source

torch = pytest.importorskip("torch", reason="torch is a dev dependency: scripts/test.sh installs it")

HEAD = textwrap.dedent("""
    import torch
    import torch.nn as nn


    class BoxHead(nn.Module):
        def __init__(self, d=4, n=3):
            super().__init__()
            self.num_layers = n
            self.layers = nn.ModuleList(nn.Linear(d, d) for _ in range(n))

        def forward(self, x, reference):
            for i, layer in enumerate(self.layers):
                x = nn.functional.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
            x[..., :2] += reference
            return x.sigmoid()


    model = BoxHead()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(2, 4), torch.randn(2, 2)).sum().backward()
""").lstrip()

ALL_RELU = HEAD.replace("nn.functional.relu(layer(x)) if i < self.num_layers - 1 else layer(x)",
                        "nn.functional.relu(layer(x))")


def run(source: str) -> BaseException | None:
    try:
        exec(compile(source, "<head>", "exec"), {})
    except RuntimeError as error:
        return error
    return None


def test_a_write_into_the_last_unsaved_output_trains_and_is_not_reported():
    assert run(HEAD) is None
    assert check_source(HEAD, "head.py").findings == []


def test_a_write_into_an_output_relu_saved_raises_and_is_reported():
    error = run(ALL_RELU)
    assert error is not None and "modified by an inplace operation" in str(error)
    findings = check_source(ALL_RELU, "head.py").findings
    assert [f.code for f in findings] == ["GT121"]
    assert "saved by `relu` for backward" in findings[0].message
