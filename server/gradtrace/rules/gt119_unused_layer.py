import ast

from gradtrace.analysis.frameworks.torch import api
from gradtrace.analysis.modules import layer_holds_parameters
from gradtrace.rules.base import Invalid, Rule, Truth


def subclass_reads(module) -> dict[int, set[str]]:
    """id(class) -> attributes its same-file subclasses read."""
    result: dict[int, set[str]] = {}
    for other in module.classes.values():
        for base in other.bases:
            parent = module.classes.get(base)
            if parent is not None and parent is not other:
                result.setdefault(id(parent), set()).update(other.reads)
    return result


def read_in_hierarchy(name: str, info, module, below: dict[int, set[str]]) -> bool:
    """Whether the class, a project base of it or a subclass in the same file reads `self.<name>` (a base in
    another file is asked about this one name: its methods that never mention it stay unparsed)."""
    if name in info.reads or name in below.get(id(info), ()):
        return True
    for base in info.bases:
        parent = module.resolve_class(base)
        if parent is not None and parent is not info and parent.reads_attr(name):
            return True
    return False


def tied_names(module) -> set[str]:
    """Every attribute name a class of the file declares tied to another (`_tied_weights_keys`): the parameters
    it holds are shared with an attribute that may be read."""
    names: set[str] = set()
    for info in module.classes.values():
        for stmt in info.node.body:
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and any(
                    isinstance(t, ast.Name) and t.id in api.TIED_PARAMETER_DECLARATIONS
                    for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])):
                for node in ast.walk(stmt.value) if stmt.value is not None else ():
                    if isinstance(node, ast.Constant) and isinstance(node.value, str):
                        names.update(node.value.split("."))
    return names


class UnusedLayer(Rule):
    code = "GT119"
    name = "unused-layer"
    summary = "A layer or parameter defined in `__init__` is never used: its gradient stays None."
    docs = """
    ## What it does
    Finds layers (`self.x = nn.Linear(...)`) and parameters (`self.w = nn.Parameter(...)`) that an
    `nn.Module` defines but that neither `forward` nor any other method of the class (or code elsewhere
    in the file) ever reads. Not a layer that owns no parameters (a rotary embedding holding buffers,
    `nn.Dropout`), not a buffer (`nn.Buffer(t)`, `register_buffer`), and not an attribute the model
    declares tied to another's parameters (transformers' `_tied_weights_keys`). Layers built in a method
    other than `__init__` (an `init_architecture()` called before training) count too, and a class that
    hands `self.parameters()` to an optimizer still has its attributes told apart.

    ## Why is this bad?
    An unused layer never contributes to the output, so its parameters never get a gradient (`.grad`
    stays `None`), the optimizer carries them along for nothing, and `DistributedDataParallel` raises
    "Expected to have finished reduction in the prior iteration" on the next step. It often means the
    forward pass returns the wrong tensor (the hidden layer instead of the classifier's output).

    ## Example
    ```python
    self.fc = nn.Linear(2 * hidden, hidden)
    self.classifier = nn.Linear(hidden, n_classes)
    ...
    def forward(self, x):
        return self.fc(self.encode(x))
    ```

    ## Use instead
    ```python
    def forward(self, x):
        return self.classifier(torch.relu(self.fc(self.encode(x))))
    ```

    ## Fix safety
    No automatic fix: use the layer, or delete it.
    """
    valid = (
        """
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.aux = nn.Linear(4, 1)

            def forward(self, x):
                return self.fc(x)

            def auxiliary(self, x):
                return self.aux(x)
        """,
        """
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self, n):
                super().__init__()
                for i in range(n):
                    setattr(self, f"layer{i}", nn.Linear(4, 4))
                self.head = nn.Linear(4, 1)

            def forward(self, x):
                for i in range(2):
                    x = getattr(self, f"layer{i}")(x)
                return self.head(x)
        """,
        """
        import torch
        import torch.nn as nn


        class RotaryEmbedding(nn.Module):
            def __init__(self, dim):
                super().__init__()
                inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
                self.inv_freq = nn.Buffer(inv_freq, persistent=False)
                self.original_inv_freq = nn.Buffer(inv_freq.clone(), persistent=False)  # a buffer, not a layer

            def forward(self, positions):
                freqs = positions[:, None].float() * self.inv_freq
                return torch.cat((freqs, freqs), dim=-1).cos()


        class Decoder(nn.Module):
            def __init__(self, dim):
                super().__init__()
                self.rotary_emb = RotaryEmbedding(dim)  # left unused: buffers only, no parameter to lose
                self.proj = nn.Linear(dim, dim)

            def forward(self, x):
                return self.proj(x)
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Unmixer(nn.Module):
                def __init__(self, bands=6, ends=3):
                    super().__init__()
                    self.bands, self.ends = bands, ends

                def build(self):
                    self.encoder = nn.Linear(self.bands, 16)
                    self.refine = nn.Linear(16, 16)  # expect: GT119
                    self.decoder = nn.Linear(16, self.ends)

                def forward(self, x):
                    return self.decoder(torch.relu(self.encoder(x)))

                def fit(self, data, steps=3):
                    self.build()
                    optimizer = torch.optim.Adam(self.parameters(), lr=1e-3)
                    for _ in range(steps):
                        optimizer.zero_grad()
                        loss = self(data).pow(2).mean()
                        loss.backward()
                        optimizer.step()


            model = Unmixer()
            model.fit(torch.randn(8, 6))
            """,
            truth=Truth(grads={"model.refine.weight": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Classifier(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(8, 4)
                    self.classifier = nn.Linear(4, 2)  # expect: GT119

                def forward(self, x):
                    return self.fc(x)


            model = Classifier()
            opt = torch.optim.Adam(model.parameters())
            model(torch.randn(3, 8)).sum().backward()
            """,
            truth=Truth(grads={"model.classifier.weight": "none", "model.classifier.bias": "none"}),
        ),
    )

    def check(self, ctx):
        module = ctx.torch.module
        below = subclass_reads(module)
        tied = None
        # A model file that trains nothing (a library's model zoo): other code may use the attribute (a pipeline
        # reading `model.null_embedding`, a checkpoint that must load): say it, quietly.
        severity = "warning" if ctx.torch.training_sinks else "information"
        for info in module.classes.values():
            if not info.is_module or info.dynamic or info.find_method("forward") is None:
                continue
            for attr in info.attrs.values():
                if attr.kind not in ("module", "param", "modules_container") or attr.method in ("forward", "__call__"):
                    continue
                if attr.name in module.attr_loads or read_in_hierarchy(attr.name, info, module, below):
                    continue
                if tied is None:
                    tied = tied_names(module)
                if attr.name in tied:
                    continue  # declared shared with another attribute's parameters
                if attr.kind == "module" and not layer_holds_parameters(attr.layer, module):
                    continue  # an unused Dropout, ReLU or rotary embedding (buffers only) has no parameters to lose
                what = "layer" if attr.kind != "param" else "parameter"
                ctx.report(attr.stmt, f"`{attr.name}` is a {what} of `{info.name}` that `forward` never reads: "
                           + ("it gets" if what == "parameter" else "its parameters get") + " no gradient.",
                           severity=severity)
        return ()
