"""The gradient lens says what a value carries gradient from, and what cut it: checked against real torch.

For each program, every module-level variable the lens describes is compared with what torch says after running
the program: it carries gradient exactly when it requires grad, and for each module the lens says it carries
from (or lost), the gradient of that value with respect to the module's parameters exists (or is None).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from gradtrace.analysis.lens import Lens
from gradtrace.engine import check_source

PROGRAMS = {
    "detach": """
        import torch
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = nn.Linear(8, 4)
                self.head = nn.Linear(4, 2)

            def forward(self, x):
                latent = self.encoder(x)
                frozen = latent.detach()
                return self.head(frozen)


        model = Net()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(16, 8)
        logits = model(x)
        loss = logits.pow(2).mean()
        loss.backward()
        """,
    "no_grad_and_item": """
        import torch
        import torch.nn as nn

        encoder = nn.Linear(8, 4)
        head = nn.Linear(4, 1)
        opt = torch.optim.SGD(list(encoder.parameters()) + list(head.parameters()), lr=0.1)
        x = torch.randn(16, 8)
        with torch.no_grad():
            feats = encoder(x)
        scores = head(feats)
        both = head(encoder(x))
        scale = scores.mean().item()
        loss = both.mean() * scale + scores.sum()
        loss.backward()
        """,
    "integer_path": """
        import torch
        import torch.nn as nn

        net = nn.Linear(8, 3)
        other = nn.Linear(8, 3)
        x = torch.randn(5, 8)
        logits = net(x)
        picked = logits.argmax(dim=1)
        mixed = other(x) * picked.float().unsqueeze(1)
        loss = mixed.sum()
        loss.backward()
        """,
}


def lens_for(text: str) -> Lens:
    result = check_source(text, "program.py")
    assert result.context is not None
    return Lens(result.context)


def run_program(text: str) -> dict:
    """Run it without its `backward()` (which would free the graphs the test then differentiates)."""
    namespace: dict = {"__name__": "__main__"}
    exec(compile(text.replace("loss.backward()", "pass"), "program.py", "exec"), namespace)
    return namespace


def modules_of(namespace: dict, name: str):
    """The nn.Module a lens name refers to (`model.encoder`, `head`)."""
    parts = name.split(".")
    obj = namespace.get(parts[0])
    for part in parts[1:]:
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, torch.nn.Module) else None


def grads(value: torch.Tensor, module: torch.nn.Module) -> list:
    if not value.requires_grad:
        return [None]
    return list(torch.autograd.grad(value.float().sum(), list(module.parameters()), allow_unused=True,
                                    retain_graph=True))


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_what_the_lens_says_is_what_torch_does(name):
    text = textwrap.dedent(PROGRAMS[name]).lstrip("\n")
    lens = lens_for(text)
    namespace = run_program(text)
    checked = 0
    tree_lines = text.splitlines()
    for number, line in enumerate(tree_lines, start=1):
        stripped = line.strip()
        if line.startswith((" ", "\t")) or "=" not in stripped or stripped.startswith(("#", "class", "def")):
            continue
        target = stripped.split("=")[0].strip()
        value = namespace.get(target)
        if not isinstance(value, torch.Tensor) or not target.isidentifier():
            continue
        facts = lens.value_at(number, 1)
        assert facts is not None and facts.expr == target, (number, facts)
        assert bool(facts.carries) == value.requires_grad, (target, facts)
        for group in facts.groups:
            module = modules_of(namespace, group)
            if module is not None:
                assert any(g is not None for g in grads(value, module)), (target, "carries", group)
        for cut in facts.cuts:
            for lost in cut.lost:
                module = modules_of(namespace, lost)
                if module is not None and lost not in facts.carries:
                    assert all(g is None for g in grads(value, module)), (target, "lost", lost)
        checked += 1
    assert checked >= 3


def test_the_lens_above_backward_names_the_module_a_detach_cut_off():
    lens = lens_for(textwrap.dedent(PROGRAMS["detach"]).lstrip("\n"))
    [sink] = lens.sinks()
    assert sink.reached == ["model.head"]
    assert [(name, cut.op, cut.line) for name, cut in sink.unreached] == [("model.encoder", ".detach()", 13)]
    assert sink.title == "reaches 1 of 2 modules — model.encoder: cut at line 13 (.detach())"


def test_explain_prints_the_same_facts(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(PROGRAMS["detach"]).lstrip("\n"), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "gradtrace", "explain", f"{path}:20"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "`logits` (tensor)" in proc.stdout
    assert "carries gradient from model.head" in proc.stdout
    assert "lost: model.encoder — cut by `.detach()` on line 13" in proc.stdout
    assert "`loss` reaches 1 of 2 modules — model.encoder: cut at line 13 (.detach())" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "gradtrace", "explain", f"{path}:13:9", "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    data = json.loads(proc.stdout)
    assert data["value"]["expr"] == "frozen" and data["value"]["carries"] == []
    assert "`.detach()` on line 13" in data["value"]["why_none"]


def test_explain_rejects_a_bad_position(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gradtrace", "explain", "nowhere.py"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "FILE:LINE" in proc.stderr
