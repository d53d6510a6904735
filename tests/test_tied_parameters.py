"""A parameter a model declares tied to another attribute's (transformers' `_tied_weights_keys`) is one tensor
with it after `post_init()`: it gets the gradient of the other's use, and is not reported as never read."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source

torch = pytest.importorskip("torch", reason="torch is a dev dependency: scripts/test.sh installs it")

TIED = textwrap.dedent('''
    import torch
    import torch.nn as nn


    class PreTrainedModel(nn.Module):
        _tied_weights_keys = {}

        def post_init(self):
            for target, source in self._tied_weights_keys.items():
                *owner, name = target.split(".")
                holder = self
                for part in owner:
                    holder = getattr(holder, part)
                shared = self
                for part in source.split("."):
                    shared = getattr(shared, part)
                setattr(holder, name, shared)


    class LMHead(nn.Module):
        def __init__(self, hidden, vocab):
            super().__init__()
            self.decoder = nn.Linear(hidden, vocab)
            self.bias = nn.Parameter(torch.zeros(vocab))

        def forward(self, x):
            return self.decoder(x)


    class ForMaskedLM(PreTrainedModel):
        _tied_weights_keys = {"lm_head.decoder.bias": "lm_head.bias"}

        def __init__(self, hidden=4, vocab=6):
            super().__init__()
            self.encoder = nn.Linear(hidden, hidden)
            self.lm_head = LMHead(hidden, vocab)
            self.post_init()

        def forward(self, x):
            return self.lm_head(self.encoder(x))


    model = ForMaskedLM()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(2, 4)).sum().backward()
''').lstrip()

UNTIED = TIED.replace('_tied_weights_keys = {"lm_head.decoder.bias": "lm_head.bias"}', "_tied_weights_keys = {}")


def run(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<model>", "exec"), namespace)
    return namespace


def test_a_declared_tied_parameter_gets_a_gradient_and_is_not_reported():
    model = run(TIED)["model"]
    assert model.lm_head.bias is model.lm_head.decoder.bias and model.lm_head.bias.grad is not None
    assert [f.code for f in check_source(TIED, "model.py").findings] == []


def test_the_same_parameter_untied_gets_no_gradient_and_is_reported():
    model = run(UNTIED)["model"]
    assert model.lm_head.bias.grad is None
    findings = check_source(UNTIED, "model.py").findings
    bias_line = UNTIED.splitlines().index("        self.bias = nn.Parameter(torch.zeros(vocab))") + 1
    assert [(f.code, f.line) for f in findings] == [("GT119", bias_line)]
    assert "`bias` is a parameter of `LMHead`" in findings[0].message
