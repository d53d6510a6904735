"""GT905: a finding of `gradtrace probe` (runtime); `check` skips rules with framework "probe"."""

from collections.abc import Iterable

from gradtrace.rules.base import Rule


class ProbeCut(Rule):
    code = "GT905"
    name = "probe-graph-cut"
    summary = "The probe saw this operation cut the autograd graph between parameters and the loss."
    severity = "warning"
    framework = "probe"
    docs = """
    ## What it does
    Reported by `gradtrace probe`: while the sandboxed forward ran, every tensor operation was
    recorded with its source line; this one received tensors that require grad and returned a result
    that does not (`.detach()`, `.data`, `.item()`, `.numpy()`, `argmax`, an integer cast, re-wrapping
    with `torch.tensor`, or any operation under `no_grad`/`inference_mode`). The parameters named in
    the message lost their gradient here.

    ## Why is this bad?
    Everything upstream of the cut gets no gradient from this path. When it is the only path to the
    loss, those parameters never train.

    ## Example
    ```python
    with torch.no_grad():
        pos = self.pos_embed(positions)   # pos_embed never trains
    ```

    ## Use instead
    ```python
    pos = self.pos_embed(positions)
    with torch.no_grad():
        pad_mask = tokens.eq(self.pad_idx)
    ```

    ## Fix safety
    No automatic fix from the probe; the matching static rule offers one where it is safe.
    """

    def check(self, ctx) -> Iterable:
        return ()
