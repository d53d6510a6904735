"""Every PyTorch rule's INVALID example, run with real torch: the behaviour its message claims is true."""

from __future__ import annotations

import contextlib
import io
import warnings

import pytest
from gradtrace.rules import all_rules

torch = pytest.importorskip("torch", reason="torch is a dev dependency: scripts/test.sh installs it")

CASES = [(r, i) for r in all_rules() if r.framework == "torch" for i, ex in enumerate(r.invalid) if ex.truth]


def run_example(source: str) -> tuple[dict, BaseException | None]:
    namespace: dict = {"__name__": "__main__"}
    torch.manual_seed(0)
    error = None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.enable_grad():
        warnings.simplefilter("ignore")
        torch.set_grad_enabled(True)
        try:
            exec(compile(source, "<example>", "exec"), namespace)
        except Exception as exc:  # the example may raise: that is what some rules claim
            error = exc
        finally:
            torch.set_grad_enabled(True)  # an example may switch grad mode off for the process (GT111)
    return namespace, error


def grad_state(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    grad = value.grad
    if grad is None:
        return "none"
    if not torch.isfinite(grad).all():
        return "nonfinite"
    return "zero" if bool((grad == 0).all()) else "ok"


@pytest.mark.parametrize(("rule", "index"), CASES, ids=[f"{r.code}-{i}" for r, i in CASES])
def test_invalid_example_behaves_as_the_message_says(rule, index):
    example = rule.invalid[index]
    truth = example.truth
    namespace, error = run_example(example.source)
    if truth.raises:
        assert error is not None, f"{rule.code}: the example was expected to raise {truth.raises[0]}"
        assert type(error).__name__ == truth.raises[0], repr(error)
        assert truth.raises[1] in str(error), str(error)
    else:
        assert error is None, f"{rule.code}: the example raised {error!r}"
    for expression, expected in truth.grads.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = eval(expression, namespace)
        assert grad_state(value) == expected, f"{rule.code}: {expression} is {grad_state(value)}, not {expected}"


def test_every_torch_rule_with_examples_has_a_truth_test():
    missing = [r.code for r in all_rules() if r.framework == "torch" and r.invalid
               and not any(ex.truth for ex in r.invalid)]
    assert missing == [], f"rules whose claims no example checks with real torch: {missing}"


def test_seed_claims_are_true():
    """The seed articles' corrected claims (shared reference SEEDS.md), checked with real torch."""
    # A5: in-place on a leaf that requires grad raises (not a silent None).
    w = torch.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w.add_(1)
    # B3: clone then in-place add is fine; gradient flows.
    x = torch.randn(3, requires_grad=True)
    y = x.clone()
    y.add_(2)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(3))
    # A3: indexing with argmax keeps the gradient of the selected element.
    W = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4) @ W
    z[z.argmax()].backward()
    assert W.grad is not None and bool((W.grad != 0).any())
    # B2: a loss computed under no_grad raises on backward.
    v = torch.randn(2, requires_grad=True)
    with torch.no_grad():
        out = (v * v).sum()
    with pytest.raises(RuntimeError, match="does not require grad"):
        out.backward()
