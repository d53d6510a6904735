"""GT902: a finding of `gradtrace probe` (runtime); `check` skips rules with framework "probe"."""

from collections.abc import Iterable

from gradtrace.rules.base import Rule


class ProbeGradZero(Rule):
    code = "GT902"
    name = "probe-grad-zero"
    summary = "The probe found this parameter's gradient exactly zero everywhere."
    severity = "warning"
    framework = "probe"
    docs = """
    ## What it does
    Reported by `gradtrace probe`: after the sandboxed backward the parameter has a gradient tensor,
    but every element is 0. The related location is the operation with a zero derivative on its path
    (`sign`, `round`, `floor`, `ceil`, ...) when the probe recorded one.

    ## Why is this bad?
    A zero gradient trains nothing and looks like a healthy tensor: no error, no None. Piecewise
    constant functions have a zero derivative almost everywhere, so weights quantised or binarised
    without a straight-through estimator never move.

    ## Example
    ```python
    w_bin = torch.sign(self.weight)
    return F.linear(x, w_bin)
    ```

    ## Use instead
    ```python
    w_bin = self.weight + (torch.sign(self.weight) - self.weight).detach()   # straight-through
    return F.linear(x, w_bin)
    ```

    ## Fix safety
    No automatic fix: a straight-through estimator changes what is optimised.
    """

    def check(self, ctx) -> Iterable:
        return ()
