"""Which `torch.nn` classes are layers, checked against PyTorch itself: `nn.Buffer(t)` and `nn.Parameter(t)` are
tensors, the classes of `torch.nn.attention` or `torch.nn.utils.prune` are helpers, every `nn.Module` is a layer."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import textwrap

import pytest
from gradtrace.analysis.frameworks.torch import api
from gradtrace.engine import check_source

torch = pytest.importorskip("torch", reason="torch is a dev dependency: scripts/test.sh installs it")
nn = torch.nn


def public_namespaces() -> list[str]:
    found = [m.name for m in pkgutil.walk_packages(nn.__path__, "torch.nn.")
             if not any(part.startswith("_") for part in m.name.split("."))]
    return ["torch.nn", *sorted(found)]


def classes_users_reach() -> list[tuple[str, bool]]:
    """(qualified name, is an nn.Module) of every capitalised class `torch.nn` exports at its top level and of every
    class a public `torch.nn` namespace defines itself (not what it merely imports)."""
    out = []
    for namespace in public_namespaces():
        try:
            module = importlib.import_module(namespace)
        except Exception:  # noqa: BLE001 (an optional backend missing on this machine)
            continue
        for name, obj in vars(module).items():
            if not (name[:1].isupper() and inspect.isclass(obj)):
                continue
            if namespace == "torch.nn" or obj.__module__ == namespace:
                out.append((f"{namespace}.{name}", issubclass(obj, nn.Module)))
    return out


def test_a_torch_nn_class_is_a_layer_exactly_when_pytorch_says_it_is_a_module():
    classes = classes_users_reach()
    assert len(classes) > 150  # the walk reached the layers, not just a few helpers
    wrong = [(name, is_module) for name, is_module in classes if api.is_layer_class(name) != is_module]
    assert not wrong, f"taken for a layer (True) or not (False) against PyTorch: {wrong}"
    assert api.is_layer_class("torch.nn.Linear") and not api.is_layer_class("torch.nn.Buffer")


def test_buffers_and_parameters_are_named_as_the_tensors_they_are():
    assert api.nn_tensor_class("torch.nn.Buffer") == "buffer"
    assert api.nn_tensor_class("torch.nn.parameter.UninitializedBuffer") == "buffer"
    assert api.nn_tensor_class("torch.nn.Parameter") == "param"
    assert api.nn_tensor_class("torch.nn.Linear") is None
    assert isinstance(nn.Buffer(torch.ones(1)), torch.Tensor) and not issubclass(nn.Buffer, nn.Module)


ROTARY = textwrap.dedent("""
    import torch
    import torch.nn as nn


    class Rotary(nn.Module):
        def __init__(self, dim):
            super().__init__()
            inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
            self.inv_freq = nn.Buffer(inv_freq, persistent=False)
            self.original_inv_freq = nn.Buffer(inv_freq.clone(), persistent=False)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            return self.proj(x) * self.inv_freq.repeat(2)


    model = Rotary(4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(2, 4)).sum().backward()
""").lstrip()


def test_an_unread_buffer_is_not_reported_as_a_layer_whose_parameters_get_no_gradient():
    namespace: dict = {}
    exec(compile(ROTARY, "<rotary>", "exec"), namespace)
    model = namespace["model"]
    # PyTorch: the buffers are registered, hold no parameters, and nothing about them can get a gradient
    assert {name for name, _ in model.named_buffers()} == {"inv_freq", "original_inv_freq"}
    assert {name for name, _ in model.named_parameters()} == {"proj.weight", "proj.bias"}
    assert not model.original_inv_freq.requires_grad and model.proj.weight.grad is not None
    assert check_source(ROTARY, "rotary.py").findings == []


def test_an_unread_layer_beside_buffers_is_still_reported():
    source = ROTARY.replace("self.proj = nn.Linear(dim, dim)", "self.proj = nn.Linear(dim, dim)\n"
                            "        self.unused = nn.Linear(dim, dim)")
    codes = [(f.code, f.line) for f in check_source(source, "rotary.py").findings]
    assert codes == [("GT119", 12)]


LAYERS = ["nn.Conv1d(2, 4, 3, 2)", "nn.Conv2d(2, 4, 3)", "nn.ConvTranspose1d(2, 4, 3)", "nn.Linear(3, 4)",
          "nn.LayerNorm(4)", "nn.BatchNorm1d(4)", "nn.GroupNorm(2, 4)", "nn.Embedding(5, 4, padding_idx=0)",
          "nn.LSTM(4, 8, batch_first=True)", "nn.GRU(4, 8)", "nn.MultiheadAttention(8, 2)", "nn.Dropout(0.1)",
          "nn.LeakyReLU(0.2)", "nn.Upsample(scale_factor=2)", "nn.RMSNorm(4)", "nn.EmbeddingBag(5, 4)"]


@pytest.mark.parametrize("made", LAYERS)
def test_what_the_table_calls_a_layers_configuration_holds_no_parameter(made):
    from gradtrace.analysis.frameworks.torch import api as table

    layer = eval(made, {"nn": nn})
    for attr in table.LAYER_CONFIG_ATTRIBUTES:
        value = getattr(layer, attr, None)
        assert not isinstance(value, (nn.Parameter, nn.Module)), f"{made}.{attr}"
        assert not (isinstance(value, torch.Tensor) and value.requires_grad), f"{made}.{attr}"


CONV = textwrap.dedent("""
    import math
    import torch
    import torch.nn as nn


    class CausalConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 2, 3, 2)
            self.trim_right_ratio = 0.5

        def forward(self, x):
            kernel_size = self.conv.kernel_size[0]
            stride = self.conv.stride[0]
            padding_total = kernel_size - stride
            x = self.conv(x)
            right = math.ceil(padding_total * self.trim_right_ratio)
            return x[..., : x.shape[-1] - right]


    model = CausalConv()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(1, 2, 9)).sum().backward()
""").lstrip()


def test_arithmetic_on_a_layers_kernel_size_cuts_no_gradient():
    namespace: dict = {}
    exec(compile(CONV, "<conv>", "exec"), namespace)
    model = namespace["model"]
    assert model.conv.kernel_size == (3,) and model.conv.weight.grad is not None
    assert check_source(CONV, "conv.py").findings == []
