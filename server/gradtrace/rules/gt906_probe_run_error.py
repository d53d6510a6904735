"""GT906: a finding of `gradtrace probe` (runtime); `check` skips rules with framework "probe"."""

from collections.abc import Iterable

from gradtrace.rules.base import Rule


class ProbeRunError(Rule):
    code = "GT906"
    name = "probe-run-error"
    summary = "The probed code raised; the finding points at the line that caused it."
    severity = "error"
    framework = "probe"
    docs = """
    ## What it does
    Reported by `gradtrace probe`: the forward or backward raised. The finding is placed on the line
    that caused the error rather than on `backward()`: the in-place operation that modified a tensor
    saved for backward, the in-place update of a leaf that requires grad, the `requires_grad` typo,
    or the place where gradient recording was switched off. Its related information points at the
    line that raised.

    ## Why is this bad?
    Autograd reports these errors late and far from their cause ("one of the variables needed for
    gradient computation has been modified by an inplace operation", "element 0 of tensors does not
    require grad"), which makes them slow to track down.

    ## Example
    ```python
    g = torch.sigmoid(self.gate(x))
    g.mul_(mask)           # GT906: sigmoid saved g for its backward
    ```

    ## Use instead
    ```python
    g = torch.sigmoid(self.gate(x)) * mask
    ```

    ## Fix safety
    No automatic fix.
    """

    def check(self, ctx) -> Iterable:
        return ()
