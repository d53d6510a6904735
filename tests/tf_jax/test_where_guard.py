"""Where-NaN rules (GT309 JAX, GT131 PyTorch): a warning only when the condition guards the singular point."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source

JAX = """
import jax
import jax.numpy as jnp

EPS = 1e-6

def f(x):
    mask = x > 0
    return jnp.sum({expr})

g = jax.grad(f)(jnp.array([0.0, 1.0]))
"""

TORCH = """
import torch

EPS = 1e-6
x = torch.tensor([0.0, 1.0], requires_grad=True)
mask = x > 0
y = {expr}
"""


def severities(template: str, expr: str, code: str) -> list[str]:
    text = textwrap.dedent(template).lstrip("\n").replace("{expr}", expr)
    return [f.severity for f in check_source(text, "example.py").findings if f.code == code]


@pytest.mark.parametrize(("expr", "expected"), [
    ("jnp.where(x > 0, jnp.sqrt(x), 0.0)", ["warning"]),
    ("jnp.where(0 < x, jnp.log(x), 0.0)", ["warning"]),
    ("jnp.where(x != 0, 1.0 / x, 0.0)", ["warning"]),
    ("jnp.where(x == 0, 0.0, 1.0 / x)", ["warning"]),
    ("jnp.where(x >= EPS, x ** 0.5, 0.0)", ["warning"]),
    ("jnp.where(mask, jnp.power(x, 0.25), 0.0)", ["warning"]),
    ("jnp.where(x > 1, jnp.log(x), 0.0)", ["information"]),
    ("jnp.where(x >= 0, jnp.sqrt(x), 0.0)", ["information"]),
    ("jnp.where(x > 0, jnp.log(x + 1.0), 0.0)", ["information"]),
    ("jnp.where(x == 0, jnp.log(x), 0.0)", ["information"]),
    ("jnp.where(x > 0, x ** 2, 0.0)", []),
    ("jnp.where(x > 0, jnp.sqrt(jnp.where(x > 0, x, 1.0)), 0.0)", []),
])
def test_jax_where_severity(expr, expected):
    assert severities(JAX, expr, "GT309") == expected


@pytest.mark.parametrize(("expr", "expected"), [
    ("torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))", ["warning"]),
    ("torch.where(x != 0, 1.0 / x, torch.zeros_like(x))", ["warning"]),
    ("torch.where(mask, x.log(), torch.zeros_like(x))", ["warning"]),
    ("torch.where(x > EPS, x.pow(0.5), torch.zeros_like(x))", ["warning"]),
    ("torch.where(x > 1, torch.log(x), torch.zeros_like(x))", ["information"]),
    ("torch.where(x > 0, torch.asin(x), torch.zeros_like(x))", ["information"]),
    ("torch.where(x > 0, x.pow(2), torch.zeros_like(x))", []),
    ("torch.where(x > 0, torch.log(x.clamp(min=1e-6)), torch.zeros_like(x))", []),
])
def test_torch_where_severity(expr, expected):
    assert severities(TORCH, expr, "GT131") == expected
