"""One probe in this process: read the file, pick the framework's probe, return its raw result."""

from __future__ import annotations

import os

from .script import detect_framework


def run_probe(req: dict) -> dict:
    path = os.path.abspath(req["path"])
    try:
        with open(path, encoding="utf-8") as fh:
            source = fh.read()
    except OSError as exc:
        return {"status": "error", "error": {"type": type(exc).__name__, "message": str(exc), "path": path,
                                             "line": None}}
    framework = req.get("framework") or detect_framework(source)
    if framework == "torch":
        from . import torch as torch_probe

        return torch_probe.run(path, source, req)
    if framework == "tensorflow":
        from .tf import TFProbe

        return TFProbe(path, source, req).run()
    if framework == "jax":
        from . import jax as jax_probe

        return jax_probe.run(path, source, req)
    return {"status": "unsupported", "framework": framework, "error": {
        "type": "Unsupported", "message": "the probe runs PyTorch, TensorFlow and JAX code; "
        f"this file uses {framework or 'neither'}", "path": path, "line": None}}
