"""The analysis process's cyclic collector: never inside an analysis (a pause there is a slow keystroke), and the
garbage an analysis leaves is collected once the user stops typing (memory stays flat)."""

from __future__ import annotations

import gc
import time

from gradtrace.engine import check_source
from gradtrace.lsp.worker import IdleCollector

CODE = """
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(4, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        return self.head(self.encoder(x).detach())


model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
model(torch.randn(2, 4)).sum().backward()
""" * 20


def test_no_collection_inside_an_analysis_and_the_garbage_goes_when_idle():
    collections: list[tuple[str, bool]] = []
    collector = IdleCollector()
    inside = [False]

    def note(phase, info):
        if phase == "start":
            collections.append((info["generation"], inside[0]))

    was_enabled = gc.isenabled()
    gc.disable()  # as in an analysis process after its warm-up
    gc.callbacks.append(note)
    try:
        collector.start()
        for _ in range(5):
            with collector.analysing():
                inside[0] = True
                result = check_source(CODE, "example.py")
                inside[0] = False
            assert any(f.code == "GT105" for f in result.findings)
        assert not [c for c in collections if c[1]], collections  # none while analysing
        deadline = time.monotonic() + 5
        while gc.get_count()[0] > 10_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gc.get_count()[0] <= 10_000, gc.get_count()  # the young garbage was collected, idle
        assert collections
    finally:
        collector.stop()
        gc.callbacks.remove(note)
        if was_enabled:
            gc.enable()
