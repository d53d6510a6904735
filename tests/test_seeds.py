"""The seed articles' examples (shared reference SEEDS.md): flagged or quiet as what is really true requires."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source

SEEDS = {
    "A1-unused-trainable": ("""
        import torch
        w1 = torch.randn(3, requires_grad=True)
        w2 = torch.randn(3, requires_grad=True)
        opt = torch.optim.SGD([w1, w2], lr=0.1)
        loss = (w1 * 2).sum()
        loss.backward()
        """, {"GT123"}),
    "A2-detach-then-loss": ("""
        import torch
        W = torch.randn(4, 3, requires_grad=True)
        b = torch.zeros(3, requires_grad=True)
        x = torch.randn(2, 4)
        z = x @ W + b
        z = z.detach()
        loss = z.pow(2).sum()
        loss.backward()
        """, {"GT105"}),
    "A3-argmax-index-is-fine": ("""
        import torch
        W = torch.randn(4, 3, requires_grad=True)
        b = torch.zeros(3, requires_grad=True)
        z = torch.randn(4) @ W + b
        idx = torch.argmax(z)
        loss = z[idx]
        loss.backward()
        """, set()),
    "A3-argmax-value-is-a-cut": ("""
        import torch
        W = torch.randn(4, 3, requires_grad=True)
        z = torch.randn(4) @ W
        loss = torch.argmax(z).float()
        loss.backward()
        """, {"GT107"}),
    "A5-inplace-on-leaf-raises": ("""
        import torch
        param = torch.randn(3, requires_grad=True)
        param.add_(1.0)
        loss = (param * 2).sum()
        loss.backward()
        """, {"GT120"}),
    "A6-indexing-keeps-the-gradient": ("""
        import torch
        w = torch.randn(5, requires_grad=True)
        loss = w[1:3].sum() + w[torch.tensor([0, 4])].mean()
        loss.backward()
        """, set()),
    "B1-no-requires-grad-raises": ("""
        import torch
        x = torch.tensor([1.0, 2.0], requires_grad=False)
        z = (x * x).sum()
        z.backward()
        """, {"GT130"}),
    "B2-loss-under-no-grad": ("""
        import torch
        y = torch.randn(3, requires_grad=True)
        with torch.no_grad():
            z = (y * y).sum()
        z.backward()
        """, {"GT109"}),
    "B3-clone-then-inplace-is-fine": ("""
        import torch
        x = torch.randn(3, requires_grad=True)
        y = x.clone()
        y.add_(2)
        y.sum().backward()
        """, set()),
}


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed(name):
    code, expected = SEEDS[name]
    found = {f.code for f in check_source(textwrap.dedent(code), "seed.py").findings
             if f.severity in ("warning", "error")}
    assert found == expected


def test_seed_a2_says_backward_raises():
    code, _ = SEEDS["A2-detach-then-loss"]
    finding = next(f for f in check_source(textwrap.dedent(code), "seed.py").findings if f.code == "GT105")
    assert "`W` and `b` get no gradient" in finding.message
    assert "`backward()` raises" in finding.message
