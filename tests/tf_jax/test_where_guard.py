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
    ("jnp.where(0 < x, jnp.log(x), 0.0)", ["information"]),  # finite 1 / x at negatives; x need not hit 0
    ("jnp.where(x != 0, 1.0 / x, 0.0)", ["information"]),
    ("jnp.where(x == 0, 0.0, 1.0 / x)", ["information"]),
    ("jnp.where(x >= EPS, x ** 0.5, 0.0)", ["warning"]),
    ("jnp.where(mask, jnp.power(x, 0.25), 0.0)", ["warning"]),
    ("jnp.where(x > 1, jnp.log(x), 0.0)", ["information"]),
    ("jnp.where(x >= 0, jnp.sqrt(x), 0.0)", ["information"]),
    ("jnp.where(x < 1.0, x, jnp.sqrt(x))", ["warning"]),  # masked at 0 and every negative
    ("jnp.where(x > 0, jnp.log(x + 1.0), 0.0)", ["information"]),
    ("jnp.where(x == 0, jnp.log(x), 0.0)", ["information"]),
    ("jnp.where(x > 0, x ** 2, 0.0)", []),
    ("jnp.where(x > 0, jnp.sqrt(jnp.where(x > 0, x, 1.0)), 0.0)", []),
])
def test_jax_where_severity(expr, expected):
    assert severities(JAX, expr, "GT309") == expected


@pytest.mark.parametrize(("expr", "expected"), [
    ("torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))", ["warning"]),
    ("torch.where(x != 0, 1.0 / x, torch.zeros_like(x))", ["warning"]),  # x holds a literal 0.0
    ("torch.where(mask, x.log(), torch.zeros_like(x))", ["warning"]),
    ("torch.where(x > EPS, x.pow(0.5), torch.zeros_like(x))", ["warning"]),
    ("torch.where(x > 1, torch.log(x), torch.zeros_like(x))", ["information"]),
    ("torch.where(x > 0, torch.asin(x), torch.zeros_like(x))", ["information"]),
    ("torch.where(x > 0, x.pow(2), torch.zeros_like(x))", []),
    ("torch.where(x > 0, torch.log(x.clamp(min=1e-6)), torch.zeros_like(x))", []),
])
def test_torch_where_severity(expr, expected):
    assert severities(TORCH, expr, "GT131") == expected


# Realistic operands: the severity must match what running the code does (NaN in the parameter's
# gradient or not). `counts` has a zero row, `slack` has negative entries, `sq` a zero diagonal.
JAX_RUN = """
import jax
import jax.numpy as jnp

def f(w, z, m):
    d = z * w
    counts = jnp.sum(m, axis=1)
    sq = jnp.sum((d[:, None] - d[None, :]) ** 2, axis=-1)
    slack = 1.0 - jnp.sum(d ** 2, axis=-1)
    masked = jnp.sum(d, axis=1) * m[:, 0]
    return jnp.sum({expr})

z = jnp.array([[0.1, 0.2, 0.3], [1.0, 2.0, 0.5], [0.3, -0.2, 0.1], [2.0, 0.0, 1.0]])
m = jnp.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
g = jax.grad(f)(jnp.ones(3), z, m)
"""

TORCH_RUN = """
import torch

w = torch.ones(3, requires_grad=True)
z = torch.tensor([[0.1, 0.2, 0.3], [1.0, 2.0, 0.5], [0.3, -0.2, 0.1], [2.0, 0.0, 1.0]])
m = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
d = z * w
counts = m.sum(1)
sq = ((d[:, None] - d[None, :]) ** 2).sum(-1)
slack = 1.0 - (d ** 2).sum(-1)
masked = d.sum(1) * m[:, 0]
y = {expr}
y.sum().backward()
g = w.grad
"""

RUN_CASES = [
    ("where(slack > 0, -LOG(slack), 1e3)", "information"),
    ("where(slack != 0, 1.0 / slack, 0.0)", "information"),
    ("where(slack > 0, SQRT(slack), 0.0)", "warning"),
    ("where(sq > 0, SQRT(sq), 0.0)", "warning"),
    ("where(sq > 0, 1.0 / sq, 0.0)", "warning"),
    ("where(counts > 0, SUM1(d) / counts, 0.0)", "warning"),
    ("where(masked > 0, LOG(masked), 0.0)", "warning"),
]


def spell(expr: str, framework: str) -> str:
    if framework == "jax":
        table = {"where(": "jnp.where(", "LOG(": "jnp.log(", "SQRT(": "jnp.sqrt(", "SUM1(d)": "jnp.sum(d, axis=1)"}
    else:
        table = {"where(": "torch.where(", "LOG(": "torch.log(", "SQRT(": "torch.sqrt(", "SUM1(d)": "d.sum(1)",
                 ", 0.0)": ", torch.zeros(()))", ", 1e3)": ", torch.full((), 1e3))"}
    for k, v in table.items():
        expr = expr.replace(k, v)
    return expr


def run_has_nan(template: str, expr: str) -> bool:
    namespace: dict = {}
    exec(compile(textwrap.dedent(template).lstrip("\n").replace("{expr}", expr), "example.py", "exec"), namespace)
    g = namespace["g"]
    return bool((g != g).any())


@pytest.mark.parametrize(("expr", "expected"), RUN_CASES)
def test_jax_severity_matches_running_it(expr, expected):
    pytest.importorskip("jax")
    code = spell(expr, "jax")
    assert severities(JAX_RUN, code, "GT309") == [expected]
    assert run_has_nan(JAX_RUN, code) == (expected == "warning")


@pytest.mark.parametrize(("expr", "expected"), RUN_CASES)
def test_torch_severity_matches_running_it(expr, expected):
    pytest.importorskip("torch")
    code = spell(expr, "torch")
    found = severities(TORCH_RUN, code, "GT131")
    assert found == ([expected] if expected == "warning" else found[:1] and ["information"])
    assert run_has_nan(TORCH_RUN, code) == (expected == "warning")
