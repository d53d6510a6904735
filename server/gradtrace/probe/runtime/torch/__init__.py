"""The PyTorch probe (see `probe.TorchProbe`)."""

from __future__ import annotations

import os
import sys


def run(path: str, source: str, req: dict) -> dict:
    import torch

    from .probe import TorchProbe

    threads = int(req.get("threads") or 0)
    if threads:
        torch.set_num_threads(threads)
    # torch.compile'd code runs eagerly under the probe, so its operations are recorded too
    os.environ["TORCHDYNAMO_DISABLE"] = "1"
    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is not None:
        try:
            dynamo.config.disable = True
        except Exception:  # noqa: BLE001
            pass
    return TorchProbe(path, source, req).run()
