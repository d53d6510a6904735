"""The probe's runtime runs in the user's interpreter: it must never need gradtrace there."""

import ast
import json
import os
import subprocess
import sys

from .conftest import data

RUNTIME = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "server", "gradtrace", "probe",
                       "runtime")
RUNNER = os.path.join(RUNTIME, "..", "runner.py")


def runtime_modules():
    for root, _dirs, files in os.walk(RUNTIME):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(root, name)


def test_no_runtime_module_imports_gradtrace():
    offenders = []
    for path in runtime_modules():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            offenders += [f"{os.path.relpath(path, RUNTIME)}:{node.lineno} imports {n}" for n in names
                          if n.split(".")[0] == "gradtrace"]
    assert offenders == []
    assert len(list(runtime_modules())) >= 10  # the split: worker, dispatch, script, locate, torch/*, tf, jax


def test_runtime_probes_where_gradtrace_cannot_be_imported(tmp_path):
    # an interpreter where `import gradtrace` fails, as in a user's environment without it
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['gradtrace'] = None\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tmp_path)
    blocked = subprocess.run([sys.executable, "-c", "import gradtrace"], capture_output=True, env=env, timeout=60)
    assert blocked.returncode != 0 and b"ModuleNotFoundError" in blocked.stderr
    out = subprocess.run([sys.executable, RUNNER, "once", data("detach_head.py")], capture_output=True, text=True,
                         env=env, timeout=300, check=True)
    result = json.loads(out.stdout)
    assert result["status"] == "ok"
    assert {p["name"]: p["grad"] for p in result["parameters"]}["model.encoder.weight"] == "none"


def test_runner_keeps_its_directory_off_the_user_path(tmp_path):
    script = tmp_path / "shadow.py"
    script.write_text("import sys, torch\nprint('PATH0', sys.path[1])\n"
                      "import importlib.util\nassert importlib.util.find_spec('launcher') is None\n"
                      "assert importlib.util.find_spec('runtime') is None\n"
                      "w = torch.ones(2, requires_grad=True)\nw.sum().backward()\n")
    out = subprocess.run([sys.executable, RUNNER, "once", str(script)], capture_output=True, text=True, timeout=300,
                         check=True)
    result = json.loads(out.stdout)
    assert result["status"] == "ok", result["error"]
