"""GT901: a finding of `gradtrace probe` (runtime); `check` skips rules with framework "probe"."""

from collections.abc import Iterable

from gradtrace.rules.base import Rule


class ProbeGradNone(Rule):
    code = "GT901"
    name = "probe-grad-none"
    summary = "The probe ran a forward/backward and this parameter's `.grad` stayed None."
    severity = "warning"
    framework = "probe"
    docs = """
    ## What it does
    Reported by `gradtrace probe` (not by `check`): the file was run in a sandbox up to its
    `backward()` (or its modules were built and differentiated), and this parameter got no gradient
    at all. The finding sits on the line that defines the parameter; its related information (and a
    GT905 finding) points at the operation that cut it off from the loss, when there is one.

    ## Why is this bad?
    A parameter whose `.grad` is None is never updated by the optimizer: it keeps its initial
    values while the rest of the model trains around it, and nothing raises. Typical causes are a
    `.detach()`, `.data`, `.item()`/`.numpy()` round trip, a `no_grad` region, an integer cast on the
    only path to the loss, a layer that `forward` never calls, or `requires_grad=False`.

    ## Example
    ```python
    feats = self.encoder(x).detach()   # GT905 here
    return self.head(feats)            # encoder.* : GT901
    ```

    ## Use instead
    ```python
    feats = self.encoder(x)
    return self.head(feats)
    ```

    ## Fix safety
    No automatic fix: the probe reports what happened at run time; the static rule for the cut (for
    example GT105 for `.detach()`) carries the fix.
    """

    def check(self, ctx) -> Iterable:
        return ()
