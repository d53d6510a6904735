"""Run every TensorFlow and JAX INVALID example with the real framework and check its `Truth`.

A rule's message says what the framework does (a gradient is None, all zero, or the code raises);
this test makes sure the framework really does it. TensorFlow is imported once for the module.

`Truth.grads` maps an expression, evaluated in the example's namespace after it ran, to "none" (the
expression is None) or "zero" (every element is 0); `Truth.raises` is (exception class name, message
fragment) that running the example must raise.
"""

from __future__ import annotations

import os
import warnings

import pytest
from gradtrace.rules import all_rules

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

CASES = [
    pytest.param(rule, i, inv, id=f"{rule.code}-{i}")
    for rule in all_rules()
    if rule.framework in ("tensorflow", "jax")
    for i, inv in enumerate(rule.invalid)
]


def test_every_tf_jax_invalid_example_has_a_truth():
    missing = [f"{rule.code}[{i}]" for rule, i, inv in (c.values for c in CASES) if inv.truth is None]
    assert not missing, f"INVALID examples without a Truth: {missing}"
    assert {c.values[0].framework for c in CASES} == {"tensorflow", "jax"}


def _is_zero(value) -> bool:
    import numpy as np

    if value is None:
        return False
    arrays = value if isinstance(value, (list, tuple)) else [value]
    return all(np.allclose(np.asarray(a, dtype=float), 0.0) for a in arrays)


@pytest.mark.parametrize("rule, index, invalid", CASES)
def test_invalid_example_does_what_the_message_says(rule, index, invalid):
    truth = invalid.truth
    assert truth is not None
    assert truth.framework == rule.framework
    __import__("tensorflow" if rule.framework == "tensorflow" else "jax")  # installed by the test command
    namespace = {"__name__": "__main__"}
    code = compile(invalid.source, f"<{rule.code} example {index}>", "exec")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if truth.raises:
            name, fragment = truth.raises
            with pytest.raises(Exception) as info:
                exec(code, namespace)
            names = {cls.__name__ for cls in type(info.value).__mro__}
            assert name in names, f"raised {type(info.value).__name__}: {info.value}"
            assert fragment in str(info.value)
            return
        exec(code, namespace)
    assert truth.grads, "a Truth must assert grads or an exception"
    for expr, expected in truth.grads.items():
        value = eval(expr, namespace)
        if expected == "none":
            assert value is None, f"{expr} = {value!r}, expected None"
        else:
            assert expected == "zero"
            assert _is_zero(value), f"{expr} = {value!r}, expected all zeros"
