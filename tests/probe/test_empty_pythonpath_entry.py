"""An empty entry in PYTHONPATH (`PYTHONPATH=/a/b:`) puts the current directory on sys.path: the probe's sandbox
must still start (the root directory is never bound into it)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_probe_runs_with_an_empty_pythonpath_entry():
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "server") + os.pathsep}
    proc = subprocess.run([sys.executable, "-m", "gradtrace", "probe", "--format", "json",
                           os.path.join(ROOT, "fixtures", "torch", "bad_detach.py")],
                          capture_output=True, text=True, timeout=300, env=env, cwd="/")
    result = json.loads(proc.stdout)
    assert result["status"] == "ok", result.get("error")
    assert any(p["grad"] == "none" for p in result["parameters"])
