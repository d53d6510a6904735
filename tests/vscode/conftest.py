"""Shared set-up for the VS Code extension's tests: the npm packages the extension is built with."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

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
