"""GT907: a finding of `gradtrace probe` (runtime); `check` skips rules with framework "probe"."""

from collections.abc import Iterable

from gradtrace.rules.base import Rule


class ProbeDeadLossTerm(Rule):
    code = "GT907"
    name = "probe-dead-loss-term"
    summary = "The probe differentiated each term of the loss: this one reaches no trainable parameter."
    severity = "warning"
    framework = "probe"
    docs = """
    ## What it does
    Reported by `gradtrace probe`: at the first `backward()`, the loss is split into the terms it is
    the sum of, and each term is differentiated on its own. A term that does not require grad, or whose
    gradient reaches no trainable parameter, is flagged at the line that computed it; the related
    location is the operation that cut it (a `.detach()`, an `.item()` round trip, a `no_grad` block).

    ## Why is this bad?
    The term changes the loss value you log, but not a single weight: the regulariser, auxiliary loss
    or penalty it was meant to add does nothing. The parameters' gradients do not show it when other
    terms train the same parameters, so only a term-by-term check finds it.

    ## Example
    ```python
    fit = F.mse_loss(pred, y)
    smooth = 0.1 * pred.detach().diff(dim=0).abs().mean()   # GT907
    loss = fit + smooth
    ```

    ## Use instead
    ```python
    fit = F.mse_loss(pred, y)
    smooth = 0.1 * pred.diff(dim=0).abs().mean()
    loss = fit + smooth
    ```

    ## Fix safety
    No automatic fix: the probe reports what happened at run time; the static rule for the cut (for
    example GT105 for `.detach()`) carries the fix.
    """

    def check(self, ctx) -> Iterable:
        return ()
