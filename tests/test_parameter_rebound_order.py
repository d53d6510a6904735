"""GT139 says assigning a tensor to a parameter raises TypeError: only once the attribute is a parameter. timm's
Beit assigns `nn.Parameter(...) if use_abs_pos_emb else None` in `__init__` and registers a new `nn.Parameter` in
`set_input_size` later: nothing raises (checked with torch), nothing is reported. (A tensor assigned over a
parameter that exists, which does raise, is GT139's own invalid example, run with torch too.)"""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source

torch = pytest.importorskip("torch", reason="torch is a dev dependency: scripts/test.sh installs it")

BEIT = textwrap.dedent("""
    import torch
    import torch.nn as nn


    class Beit(nn.Module):
        def __init__(self, n=4, d=8, num_classes=10, use_abs_pos_emb=True):
            super().__init__()
            self.num_classes = num_classes
            self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, d)) if use_abs_pos_emb else None
            self.proj = nn.Linear(d, d)

        def set_input_size(self, n):
            if self.pos_embed is not None:
                self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, self.pos_embed.shape[-1]))

        def forward(self, x):
            if self.pos_embed is not None:
                x = x + self.pos_embed
            return self.proj(x)



    def build_model_with_cfg(model_cls, **kwargs):
        return model_cls(**kwargs)


    def beit_base(**kwargs):
        return build_model_with_cfg(Beit, **kwargs)
""").lstrip()  # a model file: the factory's keyword arguments are unknown


def resize(source: str) -> BaseException | None:
    namespace: dict = {}
    exec(compile(source + "\nmodel = beit_base()\n", "<beit>", "exec"), namespace)
    model = namespace["model"]
    try:
        model.set_input_size(6)
    except TypeError as error:
        return error
    assert model.pos_embed.shape[1] == 7
    return None


def test_a_parameter_registered_later_is_no_parameter_yet_in_init():
    assert resize(BEIT) is None
    assert check_source(BEIT, "beit.py").findings == []


PACKED = textwrap.dedent("""
    import torch
    import torch.nn as nn


    class PackedLinear(nn.Module):
        def __init__(self, n=2, d=4, bits=4, dtype=torch.float32):
            super().__init__()
            self.bits = bits
            if dtype == torch.uint8:
                self.weight = nn.Parameter(torch.zeros(n, d // 2, dtype=torch.uint8), requires_grad=False)
            else:
                self.weight = nn.Parameter(torch.zeros(n, d, dtype=dtype), requires_grad=False)

        def forward(self, x):
            return x @ self.weight.float().t()


    def build_model_with_cfg(model_cls, **kwargs):
        return model_cls(**kwargs)


    def packed_linear(**kwargs):
        return build_model_with_cfg(PackedLinear, **kwargs)
""").lstrip()


def test_a_frozen_parameter_assigned_over_a_parameter_is_a_parameter_too():
    namespace: dict = {}
    exec(compile(PACKED, "<packed>", "exec"), namespace)
    for dtype in (namespace["torch"].uint8, namespace["torch"].float32):  # either branch: no TypeError
        model = namespace["packed_linear"](dtype=dtype)
        assert isinstance(model.weight, torch.nn.Parameter) and not model.weight.requires_grad
    assert check_source(PACKED, "packed.py").findings == []
