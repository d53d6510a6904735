import ast

from gradtrace.analysis.frameworks.torch import api
from gradtrace.findings import Edit, Fix
from gradtrace.rules.base import Invalid, Rule, Truth

FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
# Tensor methods whose result is always a new non-leaf when the receiver requires grad (`.to()`, `.float()`
# and `.contiguous()` may return the tensor itself, so they are left out).
DIFFERENTIABLE_METHODS = {
    "view", "reshape", "view_as", "reshape_as", "t", "transpose", "permute", "unsqueeze", "squeeze", "expand",
    "expand_as", "flatten", "clone", "mul", "div", "add", "sub", "pow", "abs", "exp", "log", "sqrt", "square",
    "sum", "mean", "matmul", "mm", "bmm", "softmax", "log_softmax", "sigmoid", "tanh", "relu", "norm", "neg",
    "sin", "cos", "repeat", "narrow", "select", "unfold", "mv", "dot", "cumsum", "prod", "masked_fill",
}
TORCH_FUNCTIONS = {
    "sigmoid", "tanh", "relu", "exp", "log", "matmul", "mm", "bmm", "cat", "stack", "softmax", "log_softmax",
    "sum", "mean", "einsum", "sqrt", "sin", "cos", "mul", "add", "div", "sub", "pow", "abs", "tensordot", "outer",
    "square", "flatten", "reshape", "transpose", "permute", "unsqueeze", "squeeze",
}
FUNCTIONAL = {
    "relu", "gelu", "silu", "linear", "conv1d", "conv2d", "conv3d", "softmax", "log_softmax", "normalize",
    "layer_norm", "embedding", "tanh", "sigmoid", "leaky_relu", "elu", "softplus", "mish",
}
ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.MatMult, ast.Pow)
# What makes a local a leaf again, keeps its gradient, or hands it a gradient another way.
KEEPS_GRAD = {"retain_grad", "requires_grad_", "register_hook", "detach_", "retains_grad"}
GRAD_OFF = ("no_grad", "inference_mode", "set_grad_enabled", "enable_grad")


def enclosing_function(parents, node):
    while True:
        node = parents.get(id(node))
        if node is None or isinstance(node, (*FUNCTIONS, ast.Module)):
            return node


class Scope:
    """The names of one function (or the module) and where each is bound."""

    def __init__(self, ctx, owner: ast.AST):
        self.ctx = ctx
        self.owner = owner
        self.names: dict[str, list[ast.Name]] = {}
        self.params: set[str] = set()
        if isinstance(owner, FUNCTIONS):
            args = owner.args
            self.params = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
            self.params |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        nodes = owner.body if isinstance(owner.body, list) else [owner.body]
        for stmt in nodes:
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name):
                    self.names.setdefault(node.id, []).append(node)
                elif isinstance(node, (ast.Global, ast.Nonlocal)):
                    self.params.update(node.names)  # bound elsewhere too

    def binding(self, name: str) -> ast.Assign | None:
        """The one plain assignment `name = ...` this scope makes (None for anything less simple)."""
        if name in self.params:
            return None
        stores = [n for n in self.names.get(name, []) if not isinstance(n.ctx, ast.Load)]
        if len(stores) != 1:
            return None
        stmt = self.ctx.source.parents.get(id(stores[0]))
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and stmt.targets[0] is stores[0]:
            return stmt
        if isinstance(stmt, ast.AnnAssign) and stmt.target is stores[0] and stmt.value is not None:
            return stmt
        return None


class Classifier:
    """Which expressions of one scope compute a non-leaf tensor that requires grad."""

    def __init__(self, ctx, scope: Scope, module_scope: Scope):
        self.ctx = ctx
        self.scope = scope
        self.module_scope = module_scope
        self.active: set[str] = set()
        layer_attrs: dict[str, set[bool]] = {}
        for info in ctx.torch.module.classes.values():
            for name, attr in info.attrs.items():
                layer_attrs.setdefault(name, set()).add(self.trainable_layer(attr.kind, attr.layer))
        self.layer_attrs = {name for name, kinds in layer_attrs.items() if kinds == {True}}

    def trainable_layer(self, kind: str, layer: str | None) -> bool:
        if kind != "module" or not layer:
            return False
        short = layer.split(".")[-1]
        if layer.startswith("torch.nn."):
            return short not in api.PARAMETERLESS_LAYERS and short not in ("ModuleList", "ModuleDict")
        cls = self.ctx.torch.module.resolve_class(layer)
        return cls is not None and cls.is_module and cls.has_parameters()

    def is_layer(self, node: ast.AST) -> bool:
        """`emb`, `model.embedding`, `self.encoder`: an nn.Module with parameters."""
        if isinstance(node, ast.Attribute):
            return node.attr in self.layer_attrs and not self.ctx.names.is_external(self.ctx.names.qualname(node))
        if isinstance(node, ast.Name):
            for scope in (self.scope, self.module_scope):
                stmt = scope.binding(node.id)
                if stmt is not None:
                    from gradtrace.analysis.modules import classify_value

                    kind, layer, _ = classify_value(stmt.value, self.ctx.torch.module)
                    return self.trainable_layer(kind, layer)
                if node.id in scope.names or node.id in scope.params:
                    return False
        return False

    def leaf_requiring_grad(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute):
            return node.attr in ("weight", "bias") and self.is_layer(node.value)
        if not isinstance(node, ast.Name):
            return False
        for scope in (self.scope, self.module_scope):
            stmt = scope.binding(node.id)
            if stmt is None:
                if node.id in scope.names or node.id in scope.params:
                    return False
                continue
            value = stmt.value
            if isinstance(value, ast.Call):
                qn = self.ctx.names.qualname(value.func) or ""
                if qn in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
                    return not any(k.arg == "requires_grad" for k in value.keywords) and len(value.args) < 2
                if qn.startswith("torch.") and qn.split(".")[-1] in api.FACTORIES:
                    return any(k.arg == "requires_grad" and isinstance(k.value, ast.Constant) and k.value.value is True
                               for k in value.keywords)
                if isinstance(value.func, ast.Attribute) and value.func.attr == "requires_grad_":
                    return not value.args or (isinstance(value.args[0], ast.Constant) and value.args[0].value is True)
            return False
        return False

    def carries(self, node: ast.AST) -> bool:
        """The value requires grad: a trainable leaf or a non-leaf computed from one."""
        if self.leaf_requiring_grad(node):
            return True
        if isinstance(node, ast.Name):
            if node.id in self.active:
                return False
            stmt = self.scope.binding(node.id)
            if stmt is None:
                return False
            self.active.add(node.id)
            try:
                return self.nonleaf(stmt.value) is not None
            finally:
                self.active.discard(node.id)
        return self.nonleaf(node) is not None

    def nonleaf(self, node: ast.AST) -> str | None:
        """How `node` computes a non-leaf that requires grad ("the output of `model.embedding`"), else None."""
        if isinstance(node, ast.Call):
            func = node.func
            if self.is_layer(func):
                return f"the output of `{self.ctx.source.segment(func)}`"
            qn = self.ctx.names.qualname(func) or ""
            arguments = list(node.args) + [k.value for k in node.keywords]
            if qn.startswith("torch.nn.functional.") and qn.split(".")[-1] in FUNCTIONAL or (
                    qn.startswith("torch.") and qn.count(".") == 1 and qn.split(".")[-1] in TORCH_FUNCTIONS):
                if any(self.carries(a.elts[0] if isinstance(a, (ast.List, ast.Tuple)) and a.elts else a)
                       for a in arguments):
                    return f"computed by `{qn.split('.')[-1]}(...)`"
                return None
            if isinstance(func, ast.Attribute) and func.attr in DIFFERENTIABLE_METHODS and not qn.startswith("torch."):
                if self.carries(func.value):
                    return f"computed by `.{func.attr}(...)`"
            return None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ARITHMETIC):
            if self.carries(node.left) or self.carries(node.right):
                return "computed from tensors that require grad"
            return None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return "computed from tensors that require grad" if self.carries(node.operand) else None
        if isinstance(node, ast.Subscript) and self.carries(node.value):
            return "an indexed view of a tensor that requires grad"
        return None


class GradOfNonLeaf(Rule):
    code = "GT136"
    name = "grad-of-non-leaf"
    summary = "Reading `.grad` of a computed tensor (a layer's output) that never called `retain_grad()`: it is None."
    docs = """
    ## What it does
    Finds `x.grad` read after `backward()` where `x` is a local computed in the same function from
    tensors that require grad — a layer's output (`emb = model.embedding(tokens)`), arithmetic on a
    parameter or on a leaf created with `requires_grad=True` — and nothing calls `x.retain_grad()`
    before the backward pass. Typical places: adversarial training (FGM/PGD) that perturbs the
    embedding output along its gradient, saliency maps on an intermediate activation.

    ## Why is this bad?
    `backward()` only fills `.grad` of leaf tensors (parameters, tensors created with
    `requires_grad=True`). A computed tensor's `.grad` stays None; PyTorch only warns "The .grad
    attribute of a Tensor that is not a leaf Tensor is being accessed". Arithmetic on it then raises
    `TypeError`, and code guarded by `if x.grad is not None` silently never runs (no adversarial
    perturbation, an empty saliency map).

    ## Example
    ```python
    emb = model.embedding(tokens)
    loss = criterion(model.head(emb), labels)
    loss.backward()
    delta = eps * emb.grad.sign()
    ```

    ## Use instead
    ```python
    emb = model.embedding(tokens)
    emb.retain_grad()
    loss = criterion(model.head(emb), labels)
    loss.backward()
    delta = eps * emb.grad.sign()
    ```

    ## Fix safety
    Safe: `retain_grad()` right after the assignment only keeps the gradient the code reads; nothing
    else changes.
    """
    valid = (
        """
        import torch
        import torch.nn as nn

        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        x = torch.randn(2, 4, requires_grad=True)
        hidden = model[0](x)
        hidden.retain_grad()
        loss = model[2](hidden.relu()).sum()
        loss.backward()
        saliency = x.grad.abs() + hidden.grad.abs().sum()
        for p in model.parameters():
            if p.grad is not None:
                p.grad.zero_()
        """,
        """
        import torch
        import torch.nn as nn

        emb = nn.Embedding(10, 4)
        head = nn.Linear(4, 2)
        tokens = torch.tensor([1, 2, 3])
        out = emb(tokens).detach().requires_grad_()
        loss = head(out).sum()
        loss.backward()
        step = out.grad.sign()
        w = torch.randn(3).to("cpu").requires_grad_()
        (w * 2).sum().backward()
        print(w.grad, head.weight.grad)
        """,
        """
        import torch
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.embedding = nn.Embedding(10, 4)
                self.head = nn.Linear(4, 2)

            def forward(self, tokens):
                emb = self.embedding(tokens)
                emb.register_hook(lambda g: None)
                return self.head(emb)


        def attack(model, tokens):
            emb = model.embedding(tokens)
            grad, = torch.autograd.grad(model.head(emb).sum(), emb)
            return emb + grad.sign()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn
            import torch.nn.functional as F


            class Classifier(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.embedding = nn.Embedding(20, 8)
                    self.head = nn.Linear(8, 2)

                def from_embeddings(self, emb):
                    return self.head(emb.mean(dim=1))


            def fgm_step(model, tokens, labels, eps=0.1):
                emb = model.embedding(tokens)
                loss = F.cross_entropy(model.from_embeddings(emb), labels)
                loss.backward()
                delta = eps * emb.grad / emb.grad.norm()  # expect: GT136
                adv = F.cross_entropy(model.from_embeddings(model.embedding(tokens) + delta), labels)
                adv.backward()


            model = Classifier()
            fgm_step(model, torch.randint(0, 20, (4, 5)), torch.randint(0, 2, (4,)))
            """,
            fixed="""
            import torch
            import torch.nn as nn
            import torch.nn.functional as F


            class Classifier(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.embedding = nn.Embedding(20, 8)
                    self.head = nn.Linear(8, 2)

                def from_embeddings(self, emb):
                    return self.head(emb.mean(dim=1))


            def fgm_step(model, tokens, labels, eps=0.1):
                emb = model.embedding(tokens)
                emb.retain_grad()
                loss = F.cross_entropy(model.from_embeddings(emb), labels)
                loss.backward()
                delta = eps * emb.grad / emb.grad.norm()  # expect: GT136
                adv = F.cross_entropy(model.from_embeddings(model.embedding(tokens) + delta), labels)
                adv.backward()


            model = Classifier()
            fgm_step(model, torch.randint(0, 20, (4, 5)), torch.randint(0, 2, (4,)))
            """,
            truth=Truth(raises=("TypeError", "NoneType")),
        ),
        Invalid(
            """
            import torch

            w = torch.randn(3, 3, requires_grad=True)
            x = torch.randn(5, 3)
            hidden = torch.tanh(x @ w)
            loss = hidden.pow(2).sum()
            loss.backward()
            saliency = None
            if hidden.grad is not None:  # expect: GT136
                saliency = hidden.grad.abs()
            """,
            fixed="""
            import torch

            w = torch.randn(3, 3, requires_grad=True)
            x = torch.randn(5, 3)
            hidden = torch.tanh(x @ w)
            hidden.retain_grad()
            loss = hidden.pow(2).sum()
            loss.backward()
            saliency = None
            if hidden.grad is not None:  # expect: GT136
                saliency = hidden.grad.abs()
            """,
            truth=Truth(grads={"hidden": "none", "saliency is None": "true"}),
        ),
    )

    def check(self, ctx):
        if ".grad" not in ctx.source.text:
            return ()
        parents = ctx.source.parents
        scopes: dict[int, Scope] = {}
        module_scope = Scope(ctx, ctx.tree)
        scopes[id(ctx.tree)] = module_scope
        reported: set[tuple[int, str]] = set()
        helpers = None  # same-file functions that call retain_grad()
        backwards = [c for c in ctx.source.nodes(ast.Call)
                     if isinstance(c.func, ast.Attribute) and c.func.attr == "backward"]
        if not backwards:
            return ()
        for node in ctx.source.nodes(ast.Attribute):
            if node.attr != "grad" or not isinstance(node.ctx, ast.Load) or not isinstance(node.value, ast.Name):
                continue
            var = node.value.id
            owner = enclosing_function(parents, node)
            if owner is None:
                continue
            if (id(owner), var) in reported:
                continue
            scope = scopes.get(id(owner))
            if scope is None:
                scope = scopes[id(owner)] = Scope(ctx, owner)
            stmt = scope.binding(var)
            if stmt is None:
                continue
            if helpers is None:
                helpers = {f.name for f in ctx.source.nodes(ast.FunctionDef, ast.AsyncFunctionDef)
                           if "retain_grad" in ctx.source.segment(f)}
            if self.kept(scope, var, parents, helpers) or self.grad_off(parents, stmt):
                continue
            backward = self.backward_between(ctx, parents, owner, backwards, stmt, node)
            if backward is None:
                continue
            how = Classifier(ctx, scope, module_scope).nonleaf(stmt.value)
            if how is None:
                continue
            reported.add((id(owner), var))
            line = ctx.span(stmt).line
            receiver = ctx.source.segment(backward.func.value)
            if "\n" in receiver or len(receiver) > 30:
                receiver = "..."
            ctx.report(node, f"`{var}` is not a leaf ({how}, line {line}) and `{var}.retain_grad()` is never called, "
                       f"so `{var}.grad` is None after `{receiver}.backward()`: PyTorch only fills `.grad` of leaf "
                       "tensors.",
                       fix=self.fix(ctx, stmt, var),
                       related=[ctx.related(stmt, f"`{var}` is computed here"),
                                ctx.related(backward, "the backward pass")])
        return ()

    @staticmethod
    def kept(scope: Scope, var: str, parents, helpers: set[str]) -> bool:
        """`var` keeps its gradient, is made a leaf, or is handed to code that may do so."""
        for name in scope.names.get(var, []):
            parent = parents.get(id(name))
            if isinstance(parent, ast.Attribute) and parent.value is name:
                if parent.attr in KEEPS_GRAD or parent.attr in ("requires_grad", "is_leaf"):
                    return True
            if isinstance(parent, ast.keyword):
                parent = parents.get(id(parent))
            if isinstance(parent, ast.Call) and parent.func is not name:
                func = parent.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called in helpers or called in KEEPS_GRAD:
                    return True
                if name in parent.args or any(k.value is name for k in parent.keywords):
                    if isinstance(func, ast.Attribute) and func.attr == "backward":
                        return True  # backward(inputs=[x]) fills x.grad
            if isinstance(parent, (ast.List, ast.Tuple)):
                holder = parents.get(id(parent))
                if isinstance(holder, ast.keyword) and holder.arg == "inputs":
                    return True
        return False

    @staticmethod
    def grad_off(parents, stmt) -> bool:
        node = stmt
        while node is not None:
            if isinstance(node, (ast.With, ast.AsyncWith)) and any(
                    any(word in ast.unparse(item.context_expr) for word in GRAD_OFF) for item in node.items):
                return True
            if isinstance(node, FUNCTIONS):
                return any(any(word in ast.unparse(d) for word in GRAD_OFF) for d in getattr(node, "decorator_list", ()))
            node = parents.get(id(node))
        return False

    @staticmethod
    def backward_between(ctx, parents, owner, backwards, stmt, read):
        start = (stmt.end_lineno, stmt.end_col_offset)
        end = (read.lineno, read.col_offset)
        for call in backwards:
            if start <= (call.lineno, call.col_offset) < end and enclosing_function(parents, call) is owner:
                if any(k.arg == "inputs" for k in call.keywords):
                    continue
                return call
        return None

    @staticmethod
    def fix(ctx, stmt, var: str) -> Fix | None:
        if stmt.lineno != stmt.end_lineno:
            return None
        text = ctx.source.lines.line(stmt.lineno)
        indent = text[: len(text) - len(text.lstrip())]
        if text.lstrip() != ctx.source.segment(stmt) and not text.lstrip().startswith(ctx.source.segment(stmt) + "  #"):
            return None  # a one-line `if ...: x = ...` or several statements on the line
        newline = "\r\n" if "\r\n" in ctx.source.text else "\n"
        end = len(text) + 1
        return Fix(f"Call `{var}.retain_grad()` after it is computed", True,
                   (Edit(stmt.lineno, end, stmt.lineno, end, f"{newline}{indent}{var}.retain_grad()"),))
