"""GT903: a finding of `gradtrace probe` (runtime); `check` skips rules with framework "probe"."""

from collections.abc import Iterable

from gradtrace.rules.base import Rule


class ProbeGradNonfinite(Rule):
    code = "GT903"
    name = "probe-grad-nonfinite"
    summary = "The probe found NaN or Inf in this parameter's gradient."
    severity = "warning"
    framework = "probe"
    docs = """
    ## What it does
    Reported by `gradtrace probe`: the sandboxed backward produced a gradient containing NaN or
    infinite values for this parameter.

    ## Why is this bad?
    One optimizer step with a non-finite gradient turns the parameter (and soon the whole model)
    into NaN. A common cause is `torch.where`/masking whose unselected branch is NaN or Inf (for
    example `sqrt` or `log` of a negative or zero value): the forward looks fine, the backward is not.

    ## Example
    ```python
    y = torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))
    ```

    ## Use instead
    ```python
    y = torch.where(x > 0, torch.sqrt(x.clamp_min(1e-12)), torch.zeros_like(x))
    ```

    ## Fix safety
    No automatic fix.
    """

    def check(self, ctx) -> Iterable:
        return ()
