"""Probe speed: cold and warm probe time beside the floors from the same run (DESIGN §8, PERF.md).

    .venv/bin/python bench/probe_bench.py [--repeat 3]

For a small MLP and a 12-layer GPT-2-small-shaped block stack (d=768, 12 heads, batch 1, sequence 64):
- plain: build + forward + backward in a fresh plain process, timed inside it (after `import torch`);
- import: `import torch` in that process;
- cold: a new launcher's first probe (starts the sandboxed worker: pays the import);
- warm: later probes on the same launcher (forked from the warm worker).
Budgets: warm <= 1.5 x plain; cold <= import + plain. Minimum over the repeats (the machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "server"))

MLP = """
import torch
import torch.nn as nn

model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(16, 32), torch.randint(0, 10, (16,))
loss = nn.functional.cross_entropy(model(x), y)
loss.backward()
opt.step()
"""

GPT = """
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d=768, heads=12):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class Stack(nn.Module):
    def __init__(self, n=12):
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(n))
        self.ln = nn.LayerNorm(768)

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return self.ln(x)


model = Stack()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
x = torch.randn(1, 64, 768)
loss = model(x).pow(2).mean()
loss.backward()
"""

PLAIN = """
import sys, time, json
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
src = open(sys.argv[1]).read()
t2 = time.perf_counter()
exec(compile(src, sys.argv[1], "exec"), {"__name__": "__main__"})
t3 = time.perf_counter()
exec(compile(src, sys.argv[1], "exec"), {"__name__": "__main__"})
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "work_s": t3 - t2, "again_s": t4 - t3}))
"""


def plain(path: str) -> dict:
    p = subprocess.run([sys.executable, "-c", PLAIN, path], capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from gradtrace.probe.launcher import ProbeLauncher

    tmp = tempfile.mkdtemp(prefix="gradtrace-bench-")
    rows = []
    for name, src in (("mlp", MLP), ("gpt2-12x768", GPT)):
        path = os.path.join(tmp, f"{name}.py")
        with open(path, "w") as fh:
            fh.write(src)
        imports, works, agains, colds, warms = [], [], [], [], []
        for _ in range(args.repeat):
            r = plain(path)
            imports.append(r["import_s"])
            works.append(r["work_s"])
            agains.append(r["again_s"])
            lau = ProbeLauncher()
            t = time.perf_counter()
            res = lau.run(path)
            colds.append(time.perf_counter() - t)
            assert res["status"] == "ok", res["error"]
            for _ in range(3):  # the first one may wait for the worker's post-probe pre-import
                t = time.perf_counter()
                res = lau.run(path)
                warms.append(time.perf_counter() - t)
                assert res["status"] == "ok", res["error"]
            lau.shutdown()
        imp, work, again = min(imports), min(works), min(agains)
        cold, warm = min(colds), min(warms)
        rows.append((name, imp, work, again, cold, warm))
    print(f"{'model':<14} {'import torch':>12} {'plain b+f+b':>12} {'plain again':>12} {'cold probe':>11} "
          f"{'warm probe':>11} {'warm/plain':>10} {'warm/again':>10} {'cold/(imp+plain)':>16}")
    for name, imp, work, again, cold, warm in rows:
        print(f"{name:<14} {imp:>11.3f}s {work:>11.3f}s {again:>11.3f}s {cold:>10.3f}s {warm:>10.3f}s "
              f"{warm / work:>9.2f}x {warm / again:>9.2f}x {cold / (imp + work):>15.2f}x")
    print("plain b+f+b: first build+forward+backward in a fresh process (includes torch's lazy imports, e.g. "
          "torch._dynamo on the first optimizer); plain again: the same work repeated in that process")
    print("budgets: warm <= 1.5x plain; cold <= 1.0x (import + plain). min of", args.repeat, "runs; python",
          sys.version.split()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
