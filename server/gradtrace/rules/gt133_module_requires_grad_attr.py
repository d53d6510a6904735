import ast

from gradtrace.analysis.frameworks.torch import api
from gradtrace.analysis.modules import ClassInfo, classify_value
from gradtrace.analysis.semantic import Binding
from gradtrace.findings import Edit, Fix
from gradtrace.records import record
from gradtrace.rules.base import Invalid, Rule, Truth

MODULE_ITERATORS = {"modules": False, "children": False, "named_modules": True, "named_children": True}
MAX_DEPTH = 6


@record(frozen=True)
class ModuleRef:
    """What an expression is known to hold: an `nn.Module` (of a same-project class, or a built-in layer)."""

    cls: ClassInfo | None = None  # a project nn.Module subclass
    layer: str | None = None  # a built-in layer's qualified name, when known


def _class_of_self(ctx, binding: Binding) -> ClassInfo | None:
    """The nn.Module class whose method binds `self` as its first parameter."""
    scope = binding.scope
    if binding.kind != "parameter" or binding.index != 0 or scope.kind != "function" or scope.parent.kind != "class":
        return None
    holder = scope.parent.node
    info = ctx.torch.module.classes.get(holder.name)
    return info if info is not None and info.node is holder and info.is_module else None


def _from_value(ctx, value: ast.expr) -> ModuleRef | None:
    kind, layer, _ = classify_value(value, ctx.torch.module)
    if kind != "module":
        qn = ctx.names.qualname(value.func) if isinstance(value, ast.Call) else None
        if qn and qn.startswith("torchvision.models.") and qn.split(".")[-1][:1].islower():
            return ModuleRef(None, qn)
        return None
    if layer and not layer.startswith("torch."):
        cls = ctx.torch.module.resolve_class(layer)
        if cls is not None:
            return ModuleRef(cls, None)
        return None
    return ModuleRef(None, layer)


def resolve_module(ctx, expr: ast.expr, depth: int = 0) -> ModuleRef | None:
    """The module `expr` holds when every binding it can have says so (None when unsure)."""
    if depth > MAX_DEPTH:
        return None
    if isinstance(expr, ast.Attribute):
        base = resolve_module(ctx, expr.value, depth + 1)
        if base is None or base.cls is None:
            return None
        attr = base.cls.find_attr(expr.attr)
        if attr is None or attr.kind != "module":
            return None
        return _from_value(ctx, attr.value) or (ModuleRef(None, attr.layer) if attr.layer and attr.layer.startswith(
            "torch.") else None)
    if not isinstance(expr, ast.Name):
        return None
    semantic = ctx.source.semantic
    scope = semantic.defining_scope(expr)
    if scope is None:
        return None
    if expr.id == "self":
        binding = semantic.binding_of(expr)
        info = _class_of_self(ctx, binding) if binding is not None else None
        return ModuleRef(info, None) if info is not None else None
    refs = []
    for binding in scope.bindings[expr.id]:
        ref = _from_binding(ctx, binding, depth)
        if ref is None:
            return None
        refs.append(ref)
    first = refs[0]
    return first if all(r == first for r in refs) else ModuleRef(None, None)


def _from_binding(ctx, binding: Binding, depth: int) -> ModuleRef | None:
    if binding.kind == "assignment":
        return _from_value(ctx, binding.value) if binding.value is not None else None
    if binding.kind == "parameter":
        return _from_param(ctx, binding, depth)
    if binding.kind == "loop":
        it = binding.statement.iter
        method = it.func.attr if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) else None
        target = binding.target
        named = MODULE_ITERATORS.get(method)
        if named is False and target is binding.node or named and isinstance(target, ast.Tuple) and len(
                target.elts) == 2 and target.elts[1] is binding.node:
            return ModuleRef(None, None)  # `for m in model.modules()`
    return None


def _from_param(ctx, binding: Binding, depth: int) -> ModuleRef | None:
    annotation = binding.node.annotation
    if annotation is not None:
        qn = ctx.names.qualname(annotation)
        cls = ctx.torch.module.resolve_class(qn) if qn else None
        if cls is not None and cls.is_module:
            return ModuleRef(cls, None)
        return None
    function, index = binding.statement, binding.index
    if index is None or binding.scope.kind != "function" or binding.scope.parent.kind == "class":
        return None  # methods: their callers pass `self` implicitly; not followed
    semantic = ctx.source.semantic
    calls = semantic.calls_of(semantic.binding_of(function))
    if not calls or len(calls) > 8:
        return None
    refs = set()
    for call in calls:
        if any(isinstance(a, ast.Starred) for a in call.args):
            return None
        if index < len(call.args):
            arg = call.args[index]
        else:
            arg = next((k.value for k in call.keywords if k.arg == binding.name), None)
        if arg is None:
            return None
        ref = resolve_module(ctx, arg, depth + 1)
        if ref is None:
            return None
        refs.add(ref)
    return refs.pop() if len(refs) == 1 else ModuleRef(None, None)


def defines_requires_grad(cls: ClassInfo | None, seen=None) -> bool:
    """Whether a project class (or a base it has) gives `requires_grad` a meaning of its own."""
    if cls is None:
        return False
    seen = seen or set()
    if id(cls) in seen:
        return False
    seen.add(id(cls))
    if cls.attr_named("requires_grad") is not None or cls.reads_attr("requires_grad") or "requires_grad" in cls.methods:
        return True
    for base in cls.bases:
        if api.is_layer_class(base) or base in ("nn.Module", "Module"):
            continue
        parent = cls.module.resolve_class(base)
        if parent is None or defines_requires_grad(parent, seen):
            return True  # an unknown base may define it
    return False


class ModuleRequiresGradAttr(Rule):
    code = "GT133"
    name = "module-requires-grad-attribute"
    summary = "`module.requires_grad = ...` on an `nn.Module` sets a plain attribute: its parameters do not change."
    docs = """
    ## What it does
    Finds `<module>.requires_grad = True/False` where `<module>` is an `nn.Module` — a variable bound to
    `nn.Linear(...)` or to an instance of a module class of the project, `self.<submodule>` registered in
    `__init__`, `model.backbone` where `backbone` is a registered submodule, or a loop variable over
    `model.modules()`.

    ## Why is this bad?
    `requires_grad` is a flag of tensors and parameters; `nn.Module` has none. The assignment only stores a
    new plain Python attribute on the module: every parameter keeps its `requires_grad`. Frozen parameters
    stay frozen (their `.grad` stays None); parameters meant to be frozen keep training.
    `nn.Module.requires_grad_(flag)` is the method that sets the flag on every parameter.

    ## Example
    ```python
    model.backbone.requires_grad = True  # unfreeze
    ```

    ## Use instead
    ```python
    model.backbone.requires_grad_(True)
    ```

    ## Fix safety
    Safe: `requires_grad_(value)` does what the assignment meant.
    """
    valid = (
        """
        import torch
        import torch.nn as nn

        model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
        for p in model.parameters():
            p.requires_grad = False
        model[1].weight.requires_grad = True
        w = torch.zeros(3)
        w.requires_grad = True
        model.requires_grad_(False)
        bias = nn.Parameter(torch.zeros(2))
        bias.requires_grad = False
        """,
        """
        import torch.nn as nn


        class Gate(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.requires_grad = True

            def forward(self, x):
                return self.fc(x) if self.requires_grad else self.fc(x).detach()


        def configure(thing, flag):
            thing.requires_grad = flag


        gate = Gate()
        gate.requires_grad = False
        configure(object(), True)
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Backbone(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 8, 3)

                def forward(self, x):
                    return self.conv(x).mean((2, 3))


            class Classifier(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.backbone = Backbone()
                    self.head = nn.Linear(8, 2)

                def forward(self, x):
                    return self.head(self.backbone(x))


            def set_stage(model, stage):
                if stage == 0:
                    for p in model.backbone.parameters():
                        p.requires_grad = False
                else:
                    model.backbone.requires_grad = True  # expect: GT133


            model = Classifier()
            for stage in range(2):
                set_stage(model, stage)
            loss = model(torch.randn(2, 3, 8, 8)).sum()
            loss.backward()
            """,
            fixed="""
            import torch
            import torch.nn as nn


            class Backbone(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 8, 3)

                def forward(self, x):
                    return self.conv(x).mean((2, 3))


            class Classifier(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.backbone = Backbone()
                    self.head = nn.Linear(8, 2)

                def forward(self, x):
                    return self.head(self.backbone(x))


            def set_stage(model, stage):
                if stage == 0:
                    for p in model.backbone.parameters():
                        p.requires_grad = False
                else:
                    model.backbone.requires_grad_(True)  # expect: GT133


            model = Classifier()
            for stage in range(2):
                set_stage(model, stage)
            loss = model(torch.randn(2, 3, 8, 8)).sum()
            loss.backward()
            """,
            truth=Truth(grads={"model.backbone.conv.weight": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Encoder(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.embed = nn.Linear(4, 8)
                    self.out = nn.Linear(8, 2)
                    self.embed.requires_grad = False  # expect: GT133

                def forward(self, x):
                    return self.out(self.embed(x))


            encoder = Encoder()
            encoder(torch.randn(3, 4)).sum().backward()
            frozen = encoder.embed.weight.requires_grad
            """,
            fixed="""
            import torch
            import torch.nn as nn


            class Encoder(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.embed = nn.Linear(4, 8)
                    self.out = nn.Linear(8, 2)
                    self.embed.requires_grad_(False)  # expect: GT133

                def forward(self, x):
                    return self.out(self.embed(x))


            encoder = Encoder()
            encoder(torch.randn(3, 4)).sum().backward()
            frozen = encoder.embed.weight.requires_grad
            """,
            truth=Truth(grads={"frozen": "true"}),
        ),
        Invalid(
            """
            import torch.nn as nn

            net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
            for m in net.modules():
                if isinstance(m, nn.BatchNorm1d):
                    m.requires_grad = False  # expect: GT133
            head = nn.Linear(4, 2)
            head.requires_grad = False  # expect: GT133
            frozen = net[1].weight.requires_grad or head.weight.requires_grad
            """,
            truth=Truth(grads={"frozen": "true"}),
        ),
    )

    def check(self, ctx):
        if ".requires_grad =" not in ctx.source.text and ".requires_grad=" not in ctx.source.text:
            return ()
        for stmt in ctx.source.nodes(ast.Assign):
            for target in stmt.targets:
                if not (isinstance(target, ast.Attribute) and target.attr == "requires_grad"):
                    continue
                ref = resolve_module(ctx, target.value)
                if ref is None or defines_requires_grad(ref.cls):
                    continue
                self.report(ctx, stmt, target)
        return ()

    def report(self, ctx, stmt: ast.Assign, target: ast.Attribute):
        module = ctx.source.segment(target.value)
        value = stmt.value
        flag = value.value if isinstance(value, ast.Constant) and isinstance(value.value, bool) else None
        if flag is True:
            effect = "frozen parameters stay frozen"
        elif flag is False:
            effect = "its parameters keep training"
        else:
            effect = "its parameters keep their `requires_grad`"
        fix = None
        if len(stmt.targets) == 1 and "\n" not in module:
            span = ctx.span(stmt)
            text = f"{module}.requires_grad_({ctx.source.segment(value)})"
            fix = Fix(f"Use `{text}`", True, (Edit(span.line, span.column, span.end_line, span.end_column, text),))
        ctx.report(target, f"`{module}` is an `nn.Module`, with no `requires_grad` flag: {effect}.", fix=fix)
