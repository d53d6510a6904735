"""The extension's TypeScript: it type-checks, passes lint, and its unit tests pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.mark.parametrize("script", ["typecheck", "lint", "test:unit"])
def test_npm_script(npm_ready, script):
    proc = run([npm_ready, "run", "-s", script], timeout=300)
    assert proc.returncode == 0, f"npm run {script} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    if script == "test:unit":
        assert "# fail 0" in proc.stdout and "# pass " in proc.stdout, proc.stdout[-2000:]


def test_manifest_settings_are_documented_and_restricted():
    with open(os.path.join(ROOT, "package.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    props = manifest["contributes"]["configuration"]["properties"]
    for name, spec in props.items():
        assert name.startswith("gradtrace."), name
        assert spec.get("markdownDescription"), f"{name} has no markdownDescription"
    # the key vscode-languageclient reads is <id>.trace.server
    assert "gradtrace.trace.server" in props and "gradtrace.server.trace" not in props
    trust = manifest["capabilities"]["untrustedWorkspaces"]
    assert trust["supported"] == "limited"
    restricted = set(trust["restrictedConfigurations"])
    executable_or_probe = {n for n in props if n in ("gradtrace.interpreter", "gradtrace.importStrategy")
                           or n.startswith("gradtrace.probe.")}
    assert executable_or_probe <= restricted, executable_or_probe - restricted
    commands = {c["command"] for c in manifest["contributes"]["commands"]}
    assert {"gradtrace.probe", "gradtrace.restart", "gradtrace.showLogs"} <= commands
    with open(os.path.join(ROOT, "extension", "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    for name in props:
        assert f"`{name}`" in readme, f"{name} is not in extension/README.md"


def test_launcher_reports_what_is_missing(tmp_path):
    """The start-up check names the problem instead of failing with a traceback."""
    launcher = os.path.join(ROOT, "extension", "bundled", "tool", "gradtrace_launcher.py")
    proc = subprocess.run([sys.executable, "-I", launcher, "--libs", str(tmp_path), "--check"],
                          capture_output=True, text=True, timeout=60)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0
    assert "bundles the server for Python none" in report["error"]
    proc = subprocess.run([sys.executable, "-I", launcher, "--libs", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    first, _, rest = proc.stderr.partition("\n")
    assert first.startswith("gradtrace-launcher: ")  # the report the client reads to explain the failure
    assert json.loads(first.split(": ", 1)[1])["strategy"] == "useBundled"
    assert rest.startswith("gradtrace: cannot start the language server:")

