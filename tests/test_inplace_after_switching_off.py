"""GT120 says an in-place write on a leaf that requires grad raises: not after `w.requires_grad = False`, as in
transformers' `prune_linear_layer` (switch off, `copy_`, switch back on). Checked with torch both ways."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source

torch = pytest.importorskip("torch", reason="torch is a dev dependency: scripts/test.sh installs it")

SOURCE = textwrap.dedent("""
    import torch
    import torch.nn as nn


    def prune_linear_layer(layer, index):
        W = layer.weight.index_select(0, index).detach().clone()
        new_layer = nn.Linear(layer.in_features, len(index))
        new_layer.weight.requires_grad = False
        new_layer.weight.copy_(W.contiguous())
        new_layer.weight.requires_grad = True
        return new_layer


    def copy_into_fresh_layer(layer, index):
        new_layer = nn.Linear(layer.in_features, len(index))
        new_layer.weight.copy_(layer.weight[index])
        return new_layer
""").lstrip()


def test_switching_requires_grad_off_around_a_copy_raises_nothing_and_is_not_reported():
    namespace: dict = {}
    exec(compile(SOURCE, "<prune>", "exec"), namespace)
    layer, index = torch.nn.Linear(4, 3), torch.tensor([0, 2])
    pruned = namespace["prune_linear_layer"](layer, index)
    assert pruned.weight.requires_grad and torch.equal(pruned.weight, layer.weight[index])
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        namespace["copy_into_fresh_layer"](layer, index)
    findings = check_source(SOURCE, "prune.py").findings
    bad_line = SOURCE.splitlines().index("    new_layer.weight.copy_(layer.weight[index])") + 1
    assert [(f.code, f.line) for f in findings] == [("GT120", bad_line)]
