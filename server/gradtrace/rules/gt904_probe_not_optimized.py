"""GT904: a finding of `gradtrace probe` (runtime); `check` skips rules with framework "probe"."""

from collections.abc import Iterable

from gradtrace.rules.base import Rule


class ProbeNotOptimized(Rule):
    code = "GT904"
    name = "probe-grad-not-optimized"
    summary = "The probe found a parameter with a gradient that no optimizer holds."
    severity = "warning"
    framework = "probe"
    docs = """
    ## What it does
    Reported by `gradtrace probe`: the parameter received a gradient, but none of the optimizers the
    script built contains it; or it is not registered with its module at all (kept in a plain Python
    list, dict or attribute, nested lists included), so `.parameters()` never yields it; or it belongs to
    a layer built inside a `forward()`, which makes a new layer with fresh weights on every call. When two
    optimizers hold exactly the same parameters, the later one is flagged too.

    ## Why is this bad?
    The gradient is computed and thrown away: the parameter never changes. The loss still goes down
    (the rest of the model trains), so the bug hides well.

    ## Example
    ```python
    g_opt = torch.optim.Adam(generator.parameters())
    d_opt = torch.optim.Adam(generator.parameters())   # meant: critic.parameters()
    ```

    ## Use instead
    ```python
    g_opt = torch.optim.Adam(generator.parameters())
    d_opt = torch.optim.Adam(critic.parameters())
    ```

    ## Fix safety
    No automatic fix: which optimizer should hold the parameter is a decision.
    """

    def check(self, ctx) -> Iterable:
        return ()
