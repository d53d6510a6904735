"""The gradient map in VS Code itself: tests/vscode/gradient_map_e2e.js in code-server with the packaged .vsix.

Opens the map before a probe (static, labelled), runs the probe on a fixture with a `.detach()` cut, checks the
webview's DOM (dead encoder parameters, the cut with its op and line, the dark theme followed) and that clicking
the cut moves the editor to line 15; screenshots land in tests/artifacts/gradient-map/. Uses the extension
tests' tooling (scripts/setup-vscode-e2e.sh, scripts/package-extension.sh); GRADTRACE_VSIX reuses a .vsix
already built from this tree.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from .conftest import run_e2e_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts", "gradient-map")

pytestmark = pytest.mark.e2e


def run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def vsix(npm_ready) -> str:
    given = os.environ.get("GRADTRACE_VSIX")
    setup = run(["bash", "scripts/setup-vscode-e2e.sh"], timeout=900)
    assert setup.returncode == 0, f"setup-vscode-e2e.sh failed:\n{setup.stdout[-4000:]}\n{setup.stderr[-4000:]}"
    assert run(["bash", "scripts/setup-gradmap.sh"], timeout=600).returncode == 0
    if given and os.path.isfile(given):
        return given
    proc = run(["bash", "scripts/package-extension.sh"], timeout=1200, env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 0, f"package-extension.sh failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
    path = proc.stdout.strip().splitlines()[-1]
    assert path.endswith(".vsix") and os.path.isfile(path), proc.stdout[-2000:]
    return path


def test_gradient_map_in_code_server(vsix):
    os.makedirs(ARTIFACTS, exist_ok=True)
    for name in os.listdir(ARTIFACTS):
        if name.endswith(".png"):
            os.remove(os.path.join(ARTIFACTS, name))
    proc, output = run_e2e_script("gradient_map_e2e.js", ARTIFACTS, vsix)
    summary = re.search(r"^gradient-map e2e: (\d+) passed, (\d+) failed$", proc.stdout, re.M)
    assert summary, output[-6000:]
    failures = "\n".join(line for line in output.splitlines() if line.startswith("FAILED"))
    assert proc.returncode == 0 and summary.group(2) == "0", f"{failures}\n\n{output[-8000:]}"
    assert int(summary.group(1)) >= 17, output[-4000:]
    shots = sorted(f for f in os.listdir(ARTIFACTS) if f.endswith(".png"))
    assert shots == ["gradient-map-clicked-cut.png", "gradient-map-high-contrast.png", "gradient-map-probe.png",
                     "gradient-map-static.png"], shots
