"""The VS Code extension end to end, in VS Code itself.

Packages the .vsix (scripts/package-extension.sh), checks what it holds, then runs tests/vscode/e2e.js:
code-server with a fresh profile and the .vsix installed, driven by headless Chromium through
playwright-core (installed by scripts/setup-vscode-e2e.sh). Screenshots of every step land in
tests/artifacts/vscode/. Every code-server started is killed with its whole process group.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile

import pytest

from .conftest import run_e2e_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kwargs)

pytestmark = pytest.mark.e2e

ARTIFACTS = os.path.join(ROOT, "tests", "artifacts", "vscode")
PYTHON_VERSIONS = ("cp310", "cp311", "cp312", "cp313")


def test_vsix_holds_what_it_needs_and_nothing_else(vsix):
    with zipfile.ZipFile(vsix) as zf:
        names = zf.namelist()
    inside = [n[len("extension/"):] for n in names if n.startswith("extension/")]
    assert "package.json" in inside
    assert "extension/out/extension.js" in inside
    assert "extension/bundled/tool/gradtrace_launcher.py" in inside
    libs = "extension/bundled/libs/"
    for tag in PYTHON_VERSIONS:
        assert any(n.startswith(f"{libs}{tag}/libcst/native.") for n in inside), f"no compiled libcst for {tag}"
    for package in ("gradtrace/lsp/server.py", "gradtrace/probe/runner.py", "pygls/", "lsprotocol/", "jedi/"):
        assert any(n.startswith(f"{libs}common/{package}") for n in inside), package
    dist_infos = {n.split("/")[4] for n in inside if n.startswith(libs) and ".dist-info/" in n}
    for project in ("gradtrace", "pygls", "lsprotocol", "libcst", "jedi"):
        assert any(d.startswith(project + "-") for d in dist_infos), f"{project} dist-info missing"
    assert "LICENSE.txt" in inside or "LICENSE" in inside, "vsce did not pick up the licence"
    pages = [n for n in inside if n.startswith(f"{libs}common/gradtrace/docs/rules/") and n.endswith(".md")]
    assert f"{libs}common/gradtrace/docs/rules/GT105.md" in pages and len(pages) > 60
    # byte code for the Python that built the bundle (the others compile theirs on the first start)
    tag = sys.implementation.cache_tag
    for module in ("gradtrace/__init__", "gradtrace/lsp/server", "lsprotocol/types", "pygls/lsp/server"):
        directory, name = module.rsplit("/", 1)
        assert f"{libs}common/{directory}/__pycache__/{name}.{tag}.pyc" in inside, module
    # pruned: what the server never runs
    unwanted = [n for n in inside if n.endswith((".map", ".ts")) or "/third_party/typeshed/stubs/" in n
                or "/django-stubs/" in n or "/libcst/codemod/" in n or re.search(r"/(yaml|_yaml|yaml_ft)/", n)
                or n.startswith(("extension/src/", "extension/tools/", "tests/", "node_modules/", "server/"))]
    assert not unwanted, unwanted[:20]
    size = os.path.getsize(vsix)
    print(f"{vsix}: {len(names)} files, {size / 1e6:.1f} MB")
    assert len(names) < 4000, len(names)


def test_extension_in_code_server(vsix):
    proc, output = run_e2e_script("e2e.js", ARTIFACTS, vsix)
    summary = re.search(r"^e2e: (\d+) passed, (\d+) failed$", proc.stdout, re.M)
    assert summary, output[-6000:]
    failures = "\n".join(line for line in output.splitlines() if line.startswith("FAILED"))
    assert proc.returncode == 0 and summary.group(2) == "0", f"{failures}\n\n{output[-8000:]}"
    assert int(summary.group(1)) >= 30, output[-4000:]
    with open(os.path.join(ARTIFACTS, "cold-start.json"), encoding="utf-8") as fh:
        cold = json.load(fh)
    print(f"cold start: {cold['open_to_squiggle_s']} s from opening a file to its first squiggle")
    shots = [f for f in os.listdir(ARTIFACTS) if f.endswith(".png")]
    assert len(shots) >= 10, shots
