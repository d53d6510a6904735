"""Shared set-up for the VS Code extension's tests: the npm packages the extension is built with."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def npm_ready() -> str:
    """`npm ci` once per package-lock.json (the same stamp scripts/package-extension.sh uses)."""
    npm = shutil.which("npm")
    assert npm and shutil.which("node"), "node and npm are needed to build the VS Code extension"
    with open(os.path.join(ROOT, "package-lock.json"), "rb") as fh:
        stamp = os.path.join(ROOT, "node_modules", ".gradtrace-" + hashlib.sha1(fh.read()).hexdigest()[:12])
    if not os.path.exists(stamp):
        proc = run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], timeout=600)
        assert proc.returncode == 0, f"npm ci failed:\n{proc.stdout}\n{proc.stderr}"
        open(stamp, "w").close()
    return npm


@pytest.fixture(scope="session")
def vsix(npm_ready) -> str:
    """The packaged extension: built once per session by scripts/package-extension.sh (after installing
    code-server, playwright-core and chromium with scripts/setup-vscode-e2e.sh), or GRADTRACE_VSIX when set."""
    setup = run(["bash", "scripts/setup-vscode-e2e.sh"], timeout=900)
    assert setup.returncode == 0, f"setup-vscode-e2e.sh failed:\n{setup.stdout[-4000:]}\n{setup.stderr[-4000:]}"
    given = os.environ.get("GRADTRACE_VSIX")
    if given:
        assert os.path.isfile(given), f"GRADTRACE_VSIX={given} does not exist"
        return os.path.abspath(given)
    proc = run(["bash", "scripts/package-extension.sh"], timeout=1200, env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 0, f"package-extension.sh failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
    path = proc.stdout.strip().splitlines()[-1]
    assert path.endswith(".vsix") and os.path.isfile(path), proc.stdout[-2000:]
    print(f"{path}: {os.path.getsize(path) / 1e6:.1f} MB")
    return path


def run_e2e_script(script: str, artifacts: str, vsix: str) -> tuple[subprocess.CompletedProcess, str]:
    """Runs tests/vscode/<script> with node against the packaged extension; its code-servers' process groups
    (recorded in `artifacts`) are killed before and after. Returns the process and its stdout + stderr, kept in
    `artifacts`/e2e-output.txt."""
    os.makedirs(artifacts, exist_ok=True)
    _kill_recorded_groups(artifacts)
    env = dict(os.environ, GRADTRACE_VSIX=vsix, GRADTRACE_E2E_ARTIFACTS=artifacts,
               GRADTRACE_E2E_PYTHON=os.path.join(ROOT, ".venv", "bin", "python"))
    try:
        proc = subprocess.run(["node", os.path.join(ROOT, "tests", "vscode", script)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
    finally:
        _kill_recorded_groups(artifacts)
    output = proc.stdout + proc.stderr
    with open(os.path.join(artifacts, "e2e-output.txt"), "w") as fh:
        fh.write(output)
    return proc, output


def _kill_recorded_groups(artifacts: str) -> None:
    pgids = os.path.join(artifacts, "code-server.pgids")
    if not os.path.exists(pgids):
        return
    for line in open(pgids).read().split():
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(int(line), sig)
            except (ProcessLookupError, PermissionError, ValueError):
                break
    os.remove(pgids)
