import ast

from gradtrace.analysis.modules import classify_value, layer_holds_parameters
from gradtrace.findings import Edit, Fix
from gradtrace.rules.base import Invalid, Rule, Truth

WRAPPERS = {
    ("modules_container", "list"): "ModuleList",
    ("modules_container", "tuple"): "ModuleList",
    ("modules_container", "dict"): "ModuleDict",
    ("params_container", "list"): "ParameterList",
    ("params_container", "tuple"): "ParameterList",
    ("params_container", "dict"): "ParameterDict",
}


# `self.add_module(str(i), layer)` for each layer of the list: what the container holds is registered after all
REGISTERING_METHODS = frozenset({"add_module", "register_module", "register_parameter"})


def registered_one_by_one(info, name: str) -> bool:
    """A loop over `self.<name>` (or `enumerate(self.<name>)`) that registers what it gets on `self`."""
    for method in info.methods.values():
        for loop in ast.walk(method):
            if not isinstance(loop, ast.For) or not any(
                    isinstance(n, ast.Attribute) and n.attr == name and isinstance(n.value, ast.Name)
                    and n.value.id == "self" for n in ast.walk(loop.iter)):
                continue
            for call in ast.walk(loop):
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
                        and call.func.attr in REGISTERING_METHODS and isinstance(call.func.value, ast.Name) \
                        and call.func.value.id == "self":
                    return True
    return False


def holds_no_parameters(value: ast.expr, module) -> bool:
    """A literal list/tuple/dict whose every item is a layer without parameters (`{"ce": nn.CrossEntropyLoss()}`):
    nothing is lost by leaving it unregistered."""
    items = value.elts if isinstance(value, (ast.List, ast.Tuple)) else \
        value.values if isinstance(value, ast.Dict) else None
    if not items:
        return False
    for item in items:
        kind, layer, _ = classify_value(item, module)
        if kind != "module" or not layer or layer_holds_parameters(layer, module):
            return False
    return True


def nn_prefix(ctx) -> str:
    for local, qualified in ctx.names.aliases.items():
        if qualified == "torch.nn":
            return local
    for local, qualified in ctx.names.aliases.items():
        if qualified == "torch":
            return f"{local}.nn"
    return "torch.nn"


def wrap_fix(ctx, value: ast.expr, wrapper: str) -> Fix | None:
    if not isinstance(value, (ast.List, ast.ListComp, ast.Tuple, ast.Dict, ast.DictComp)):
        return None
    if isinstance(value, ast.Dict) and not all(isinstance(k, ast.Constant) and isinstance(k.value, str)
                                               for k in value.keys):
        return None
    span = ctx.span(value)
    text = ctx.source.segment(value)
    if isinstance(value, ast.Tuple) and not text.startswith("("):
        text = f"[{text}]"
    elif isinstance(value, ast.Tuple):
        text = "[" + text[1:-1] + "]"
    name = f"{nn_prefix(ctx)}.{wrapper}"
    return Fix(f"Wrap in `{name}`", True, (Edit(span.line, span.column, span.end_line, span.end_column,
                                               f"{name}({text})"),))


class UnregisteredContainer(Rule):
    code = "GT115"
    name = "unregistered-container"
    summary = "A Python list/dict/tuple of layers or parameters in an `nn.Module` is invisible to `.parameters()`."
    docs = """
    ## What it does
    Finds `nn.Module` attributes holding a plain Python `list`, `dict` or `tuple` of layers or
    parameters (including lists filled with `.append` in `__init__`). Not when the module registers each
    item itself (`self.add_module(str(i), layer)` in a loop over the list), nor for a container of layers
    that own no parameters (`{"ce": nn.CrossEntropyLoss()}`): nothing is lost there.

    ## Why is this bad?
    PyTorch only registers `nn.Module` and `nn.Parameter` attributes. Layers kept in a Python container
    are missing from `model.parameters()`: the optimizer never updates them, `model.to(device)` does
    not move them and `state_dict()` does not save them — with no warning.

    ## Example
    ```python
    self.blocks = [nn.Linear(d, d) for _ in range(n)]
    ```

    ## Use instead
    ```python
    self.blocks = nn.ModuleList([nn.Linear(d, d) for _ in range(n)])
    ```

    ## Fix safety
    Safe: `nn.ModuleList` / `nn.ModuleDict` / `nn.ParameterList` behave like the container for
    iteration and indexing and register what they hold. (ModuleDict needs string keys; the fix is only
    offered for dict literals with string keys.)
    """
    valid = (
        """
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
                self.sizes = [4, 4, 4]

            def forward(self, x):
                for block in self.blocks:
                    x = block(x)
                return x
        """,
        """
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self, sizes):
                super().__init__()
                self.heads = []
                for n in sizes:
                    self.heads.append(nn.Linear(4, n))
                self.heads = nn.ModuleList(self.heads)
                self.handles = []
                self.handles.append(self.register_forward_hook(lambda *args: None))

            def forward(self, x):
                return [head(x) for head in self.heads]
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.inp = nn.Linear(4, 8)
                    self.blocks = [nn.Linear(8, 8) for _ in range(2)]  # expect: GT115

                def forward(self, x):
                    h = self.inp(x)
                    for block in self.blocks:
                        h = h + block(h)
                    return h


            net = Net()
            opt = torch.optim.SGD(net.parameters(), lr=0.1)
            net(torch.randn(3, 4)).sum().backward()
            in_optimizer = sum(p.numel() for p in net.parameters())
            """,
            fixed="""
            import torch
            import torch.nn as nn


            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.inp = nn.Linear(4, 8)
                    self.blocks = nn.ModuleList([nn.Linear(8, 8) for _ in range(2)])  # expect: GT115

                def forward(self, x):
                    h = self.inp(x)
                    for block in self.blocks:
                        h = h + block(h)
                    return h


            net = Net()
            opt = torch.optim.SGD(net.parameters(), lr=0.1)
            net(torch.randn(3, 4)).sum().backward()
            in_optimizer = sum(p.numel() for p in net.parameters())
            """,
            truth=Truth(grads={"[p for p in net.parameters()][-1]": "ok",
                               "len(list(net.parameters())) == 2": "true"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class MultiHead(nn.Module):
                def __init__(self, sizes):
                    super().__init__()
                    self.shared = nn.Linear(4, 8)
                    self.heads = []  # expect: GT115
                    for n in sizes:
                        self.heads.append(nn.Linear(8, n))

                def forward(self, x):
                    z = self.shared(x)
                    return [head(z) for head in self.heads]


            net = MultiHead([2, 3])
            sum(out.sum() for out in net(torch.randn(5, 4))).backward()
            """,
            truth=Truth(grads={"len(list(net.parameters())) == 2": "true"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Forecaster(nn.Module):
                def __init__(self, horizons=(1, 7)):
                    super().__init__()
                    self.body = nn.Linear(4, 8)
                    self.heads = tuple(nn.Linear(8, 1) for _ in horizons)  # expect: GT115

                def forward(self, x):
                    z = self.body(x)
                    return [head(z) for head in self.heads]


            net = Forecaster()
            sum(out.sum() for out in net(torch.randn(3, 4))).backward()
            """,
            truth=Truth(grads={"len(list(net.parameters())) == 2": "true"}),
        ),
    )

    def check(self, ctx):
        module = ctx.torch.module
        for info in module.classes.values():
            if not info.is_module:
                continue
            for attr in info.attrs.values():
                wrapper = WRAPPERS.get((attr.kind, attr.container or ""))
                if wrapper is None or registered_one_by_one(info, attr.name) or (
                        attr.kind == "modules_container" and holds_no_parameters(attr.value, module)):
                    continue
                what = "layers" if attr.kind == "modules_container" else "parameters"
                ctx.report(attr.value, f"`self.{attr.name}` keeps {what} in a Python {attr.container}: "
                           f"`{info.name}.parameters()` leaves them out.",
                           fix=wrap_fix(ctx, attr.value, wrapper))
        return ()
