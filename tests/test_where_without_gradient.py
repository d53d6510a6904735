"""GT131's loose suspicion (`torch.where` over a log or a division of its raw input) needs a gradient flowing through
the call: a mel filterbank helper computes on constant frequencies and no gradient ever reaches it (checked with
torch), so nothing is reported. The same `torch.where` on a trainable value still is."""

from __future__ import annotations

import math
import textwrap

import pytest
from gradtrace.engine import check_source

torch = pytest.importorskip("torch", reason="torch is a dev dependency: scripts/test.sh installs it")

MEL = textwrap.dedent("""
    import math

    import torch


    def mel_filterbank(n_mels: int, f_max: float) -> torch.Tensor:
        def hz_to_mel(freq: torch.Tensor) -> torch.Tensor:
            linear_step = 200.0 / 3
            min_log_hz = 1000.0
            log_step = math.log(6.4) / 27.0
            return torch.where(
                freq >= min_log_hz, min_log_hz / linear_step + torch.log(freq / min_log_hz) / log_step,
                freq / linear_step,
            )

        return hz_to_mel(torch.linspace(0.0, f_max, n_mels))


    class MelFrontEnd:
        def __init__(self, n_mels: int = 8):
            self.filters = mel_filterbank(n_mels, 8000.0)
""").lstrip()

TRAINED = textwrap.dedent("""
    import math

    import torch


    def hz_to_mel(freq: torch.Tensor) -> torch.Tensor:
        linear_step = 200.0 / 3
        min_log_hz = 1000.0
        log_step = math.log(6.4) / 27.0
        return torch.where(
            freq >= min_log_hz, min_log_hz / linear_step + torch.log(freq / min_log_hz) / log_step, freq / linear_step
        )


    freq = torch.linspace(0.0, 2000.0, 5, requires_grad=True)
    hz_to_mel(freq).sum().backward()
""").lstrip()


def test_a_where_no_gradient_reaches_is_not_reported():
    namespace: dict = {}
    exec(compile(MEL, "<mel>", "exec"), namespace)
    points = namespace["MelFrontEnd"]().filters
    assert not points.requires_grad and bool(torch.isfinite(points).all())
    assert check_source(MEL, "mel.py").findings == []


def test_the_same_where_on_a_trainable_value_is_reported():
    namespace: dict = {"math": math}
    exec(compile(TRAINED, "<mel>", "exec"), namespace)
    assert bool(torch.isnan(namespace["freq"].grad).any())  # log of a zero frequency, masked: NaN
    assert [f.code for f in check_source(TRAINED, "mel.py").findings] == ["GT131"]
