"""Look-alikes GT136 must stay quiet on, and shapes beyond their own examples they must catch."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source
from gradtrace.fixes.apply import apply_edits


def found(code: str, text: str) -> list:
    source = textwrap.dedent(text).lstrip("\n")
    return [f for f in check_source(source, "example.py").findings if f.code == code]


def lines(code: str, text: str) -> list[int]:
    return sorted(f.line for f in found(code, text))


QUIET = {
    "GT136": [
        """
        import torch
        import torch.nn as nn

        model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 1))
        tokens = torch.tensor([1, 2])
        with torch.no_grad():
            frozen = model[0](tokens)
        emb = model[0].weight * 1.0
        out = model[1](emb).sum()
        out.backward(inputs=[emb])
        print(emb.grad, frozen.grad)
        """,
        """
        import torch
        import torch.nn as nn


        def keep(t):
            t.retain_grad()
            return t


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = nn.Linear(4, 4)

            def run(self, x):
                h = self.encoder(x)
                keep(h)
                h.sum().backward()
                return h.grad
        """,
        """
        import torch
        import torch.nn as nn

        w = nn.Parameter(torch.randn(3))
        y = (w * 2).sum()
        early = w * 3
        print(early.grad)
        y.backward()
        x = w * 2
        x = x.detach().requires_grad_()
        (x * 3).sum().backward()
        print(w.grad, x.grad)
        """,
        """
        import torch


        def saliency(model, images):
            out = model(images)
            out.sum().backward()
            return out.grad
        """,
        """
        import torch

        w = torch.randn(3, requires_grad=True)
        y = w.to("cpu")
        z = w.float()
        (y + z).sum().backward()
        print(y.grad, z.grad)
        """,
    ],
}

FLAGGED = {
    "GT136": [
        (
            """
            import torch

            w = torch.randn(3, requires_grad=True)
            y = w * 2
            y.sum().backward()
            print(y.grad.sum())
            """,
            [6],
        ),
        (
            """
            import torch
            import torch.nn as nn


            class Probe(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.encoder = nn.Linear(4, 4)
                    self.head = nn.Linear(4, 1)

                def attribution(self, x):
                    h = self.encoder(x)
                    self.head(h).sum().backward()
                    return h.grad * h
            """,
            [14],
        ),
    ],
}


@pytest.mark.parametrize(("code", "text"), [(c, t) for c, ts in QUIET.items() for t in ts])
def test_quiet_on_look_alikes(code, text):
    assert found(code, text) == []


@pytest.mark.parametrize(("code", "text", "expected"), [(c, t, e) for c, cases in FLAGGED.items() for t, e in cases])
def test_flags_other_shapes(code, text, expected):
    assert lines(code, text) == expected


def test_retain_grad_fix_keeps_crlf_and_indentation():
    source = "import torch\r\n\r\ndef f(n):\r\n    w = torch.randn(n, requires_grad=True)\r\n" \
             "    y = w * 2  # double\r\n    y.sum().backward()\r\n    return y.grad\r\n"
    findings = [f for f in check_source(source, "example.py").findings if f.code == "GT136"]
    assert len(findings) == 1 and findings[0].fix.safe
    fixed = apply_edits(source, findings[0].fix.edits)
    assert "    y = w * 2  # double\r\n    y.retain_grad()\r\n" in fixed
