"""What an imported module does is analysed once and shared by every file that imports it (the CLI's workers and
the language server check many files against one project): each file is told what it would be told alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

HELPERS = """
import torch


def pick(scores):
    chosen = torch.topk(scores, k=2, dim=-1).indices
    return chosen.float()
"""

MODEL = """
import torch
import torch.nn as nn
from helpers import pick


class {name}(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        return pick(self.proj(x))
"""


def messages(tmp_path, *files: str) -> dict[str, list[tuple[str, int, str]]]:
    """What `gradtrace check` tells of each file, the files checked one after the other by one process."""
    proc = subprocess.run([sys.executable, "-m", "gradtrace", "check", "--no-cache", "-j", "1", "--format", "json",
                           *files], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    told: dict = {name: [] for name in files}
    for finding in json.loads(proc.stdout):
        told[os.path.basename(finding["path"])].append((finding["code"], finding["line"], finding["message"]))
    return told


def test_a_cut_in_an_imported_function_is_named_alike_for_every_file_that_reaches_it(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "helpers.py").write_text(textwrap.dedent(HELPERS))
    (tmp_path / "gate.py").write_text(MODEL.format(name="Gate"))
    (tmp_path / "router.py").write_text(MODEL.format(name="Router"))

    told = messages(tmp_path, "gate.py", "router.py")  # `pick` is analysed for gate.py, its summary reused

    assert told["gate.py"] == [("GT107", 12, "`proj` gets no gradient: `torch.topk().indices` on line 6 of "
                                             "helpers.py cuts `chosen`.")]
    assert told["router.py"] == told["gate.py"]
    assert messages(tmp_path, "router.py") == {"router.py": told["router.py"]}  # as when checked alone


REBOUND = """
import torch
import torch.nn as nn

encoder = nn.Linear(4, 4)
head = nn.Linear(4, 1)


def features(x):
    return scale(encoder(x))


def scale(t):
    return t * 2


def frozen_scale(t):
    return t.detach() * 2


optimizer = torch.optim.SGD(list(encoder.parameters()) + list(head.parameters()), lr=0.1)
x = torch.randn(8, 4)
preview = head(features(x))

scale = frozen_scale
loss = head(features(x)).sum()
loss.backward()
optimizer.step()
"""


def test_a_function_is_analysed_again_when_a_module_level_name_it_reads_was_rebound(tmp_path):
    """`features` reads `scale`, rebound between its two calls: the summary of the first call (nothing cut) is not
    the answer for the second, which trains through `frozen_scale`."""
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "train.py").write_text(textwrap.dedent(REBOUND))
    assert messages(tmp_path, "train.py")["train.py"] == [
        ("GT105", 18, "`encoder` gets no gradient: `.detach()` on line 18 cuts `t`.")]
    namespace: dict = {}
    exec(compile(textwrap.dedent(REBOUND), "train.py", "exec"), namespace)  # what torch does with it
    assert namespace["encoder"].weight.grad is None and namespace["head"].weight.grad is not None
