"""Benchmark `gradtrace check` against its floors: `ast.parse` of the same text, and ruff.

    .venv/bin/python bench/check_bench.py            # 1k, 5k, 10k-line files, real code, whole-process ratios

Files are assembled by the benchmark from realistic PyTorch model and training code (modules with
forward passes, helpers, training loops, some cuts), with names varied per copy so nothing is shared.
Budgets (DESIGN §8): analysis ≤ 5× ast.parse in-process; whole process ≤ 4× `ruff check --select ALL`.
In-process times: minimum of several runs; whole-process times: median user+sys CPU of several runs.
Real code: three of torch's own `nn` modules (~5.7k lines) taken from the installed package at run time.
"""

from __future__ import annotations

import ast
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "server"))

from gradtrace.engine import check_source  # noqa: E402

HEADER = """import math
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

"""

BLOCK = '''

class Block{i}(nn.Module):
    """Transformer-style block number {i}."""

    def __init__(self, dim=64, heads=4, dropout=0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)
        self.scale{i} = nn.Parameter(torch.ones(dim))

    def forward(self, x, mask=None):
        h = self.norm1(x)
        a, _ = self.attn(h, h, h, key_padding_mask=mask)
        x = x + self.drop(a)
        x = x + self.drop(self.mlp(self.norm2(x))) * self.scale{i}
        return x


def helper_{i}(logits, targets, smoothing=0.1):
    n = logits.size(-1)
    logp = F.log_softmax(logits, dim=-1)
    with torch.no_grad():
        true = torch.full_like(logp, smoothing / (n - 1))
        true.scatter_(1, targets.unsqueeze(1), 1.0 - smoothing)
    return -(true * logp).sum(-1).mean()


class Model{i}(nn.Module):
    def __init__(self, vocab=100, dim=64, depth=2, n_cls=5):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList([Block{i}(dim) for _ in range(depth)])
        self.head = nn.Linear(dim, n_cls)

    def forward(self, tokens):
        x = self.emb(tokens)
        for block in self.blocks:
            x = block(x)
        pooled = x.mean(1)
        if self.training:
            pooled = pooled + 0.01 * torch.randn_like(pooled)
        return self.head(pooled)


def train_{i}(epochs=1):
    model = Model{i}()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    data = torch.randint(0, 100, (8, 16))
    labels = torch.randint(0, 5, (8,))
    history = []
    for epoch in range(epochs):
        model.train()
        opt.zero_grad()
        logits = model(data)
        loss = helper_{i}(logits, labels)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append(loss.item())
        model.eval()
        with torch.no_grad():
            acc = (model(data).argmax(-1) == labels).float().mean().item()
        print(epoch, history[-1], acc, math.sqrt(epoch + 1), np.mean(history))
    return model
'''


def make_source(lines: int) -> str:
    parts = [HEADER]
    i = 0
    while sum(p.count("\n") for p in parts) < lines:
        parts.append(BLOCK.replace("{i}", str(i)))
        i += 1
    return "".join(parts)


REAL_FILES = ("nn/modules/conv.py", "nn/modules/activation.py", "nn/modules/rnn.py")


def real_torch_source() -> str | None:
    """~5.7k lines of real PyTorch code: three of torch's own nn modules from the installed package, joined
    (their `from __future__` lines dropped, which must open a file). None when torch is not installed."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    base = os.path.dirname(spec.origin)
    parts = []
    for rel in REAL_FILES:
        try:
            with open(os.path.join(base, rel), encoding="utf-8") as fh:
                parts.append("".join(line for line in fh if not line.startswith("from __future__")))
        except OSError:
            return None
    return "\n".join(parts)


def best(fn, repeat=5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def process_cpu(argv: list[str], repeat=5, env=None) -> float:
    samples = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(samples)


def main() -> int:
    ruff = shutil.which("ruff", path=os.path.join(ROOT, ".venv", "bin")) or shutil.which("ruff")
    gradtrace = os.path.join(ROOT, ".venv", "bin", "gradtrace")
    print("In-process: gradtrace analysis vs ast.parse (min of 5 runs)")
    print(f"{'lines':>7} {'ast.parse ms':>13} {'gradtrace ms':>13} {'ratio':>7}  budget 5x")
    for lines in (1000, 5000, 10000):
        text = make_source(lines)
        n = text.count("\n")
        parse = best(lambda text=text: ast.parse(text))
        analysis = best(lambda text=text: check_source(text, "bench.py"))
        findings = len(check_source(text, "bench.py").findings)
        print(f"{n:>7} {parse * 1000:>13.1f} {analysis * 1000:>13.1f} {analysis / parse:>6.1f}x  "
              f"({findings} findings)")
    real = real_torch_source()
    if real is not None:
        parse = best(lambda: ast.parse(real))
        analysis = best(lambda: check_source(real, "bench.py"))
        print(f"{real.count(chr(10)):>7} {parse * 1000:>13.1f} {analysis * 1000:>13.1f} {analysis / parse:>6.1f}x  "
              f"(real code: torch {', '.join(REAL_FILES)})")
    # A normal installation has its bytecode compiled; a PYTHONDONTWRITEBYTECODE inherited from the shell
    # would make every run recompile gradtrace's modules. One warm-up run writes the bytecode.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    inputs = [("generated", make_source(6000))] + ([("real", real)] if real is not None else [])
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "pyproject.toml"), "w") as fh:
            fh.write("[project]\nname = 'bench'\n")
        for label, text in inputs:
            path = os.path.join(tmp, f"{label}.py")
            with open(path, "w") as fh:
                fh.write(text)
            subprocess.run([gradtrace, "check", "--no-cache", path], stdout=subprocess.DEVNULL, env=env)
            print(f"\nWhole process on the {label} {text.count(chr(10))}-line file (median CPU s of 5 runs)")
            ours = process_cpu([gradtrace, "check", "--no-cache", path], env=env)
            print(f"  gradtrace check --no-cache          {ours:.3f} s")
            if ruff:
                theirs = process_cpu([ruff, "check", "--select", "ALL", "--no-cache", path], env=env)
                print(f"  ruff check --select ALL --no-cache  {theirs:.3f} s")
                print(f"  ratio {ours / theirs:.1f}x  (budget 4x)")
            else:
                print("  ruff not found: install the dev extra")
    return 0


if __name__ == "__main__":
    sys.exit(main())
