import ast

from gradtrace.analysis.frameworks.torch import api
from gradtrace.analysis.modules import classify_value
from gradtrace.findings import Edit, Fix
from gradtrace.rules.base import Invalid, Rule, Truth

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


class Classifier:
    """Which expressions of one function (or the module) compute a non-leaf tensor that requires grad."""

    def __init__(self, ctx, function: ast.AST):
        self.ctx = ctx
        self.semantic = ctx.source.semantic
        self.function = function
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

    def assigned(self, name: ast.Name) -> ast.expr | None:
        """The value of `name = value` when that is the only binding the name can read."""
        binding = self.semantic.sole_binding(name)
        return binding.value if binding is not None and binding.kind == "assignment" else None

    def is_layer(self, node: ast.AST) -> bool:
        """`emb`, `model.embedding`, `self.encoder`: an nn.Module with parameters."""
        if isinstance(node, ast.Attribute):
            return node.attr in self.layer_attrs and not self.ctx.names.is_external(self.ctx.names.qualname(node))
        value = self.assigned(node) if isinstance(node, ast.Name) else None
        if value is None:
            return False
        kind, layer, _ = classify_value(value, self.ctx.torch.module)
        return self.trainable_layer(kind, layer)

    def leaf_requiring_grad(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute):
            return node.attr in ("weight", "bias") and self.is_layer(node.value)
        value = self.assigned(node) if isinstance(node, ast.Name) else None
        if not isinstance(value, ast.Call):
            return False
        qn = self.ctx.names.qualname(value.func) or ""
        if qn in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
            return not any(k.arg == "requires_grad" for k in value.keywords) and len(value.args) < 2
        if qn.startswith("torch.") and qn.split(".")[-1] in api.FACTORIES:
            return any(k.arg == "requires_grad" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in value.keywords)
        if isinstance(value.func, ast.Attribute) and value.func.attr == "requires_grad_":
            return not value.args or (isinstance(value.args[0], ast.Constant) and value.args[0].value is True)
        return False

    def carries(self, node: ast.AST) -> bool:
        """The value requires grad: a trainable leaf or a non-leaf computed from one."""
        if self.leaf_requiring_grad(node):
            return True
        if isinstance(node, ast.Name):
            binding = self.semantic.sole_binding(node)
            if node.id in self.active or binding is None or binding.kind != "assignment" or binding.value is None \
                    or binding.scope.node is not self.function:
                return False
            self.active.add(node.id)
            try:
                return self.nonleaf(binding.value) is not None
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
        if ".grad" not in ctx.source.text or not any(
                isinstance(c.func, ast.Attribute) and c.func.attr == "backward" for c in ctx.source.nodes(ast.Call)):
            return ()
        semantic = ctx.source.semantic
        reported: set[int] = set()
        helpers = None  # same-file functions that call retain_grad()
        for node in ctx.source.nodes(ast.Attribute):
            if node.attr != "grad" or not isinstance(node.ctx, ast.Load) or not isinstance(node.value, ast.Name):
                continue
            var = node.value.id
            binding = semantic.sole_binding(node.value)
            owner = semantic.function_of(node)
            if binding is None or binding.kind != "assignment" or binding.value is None \
                    or binding.scope.node is not owner or id(binding) in reported:
                continue
            stmt = binding.statement
            if helpers is None:
                helpers = {f.name for f in ctx.source.nodes(ast.FunctionDef, ast.AsyncFunctionDef)
                           if "retain_grad" in ctx.source.segment(f)}
            if self.kept(semantic, binding, helpers) or self.grad_off(semantic, stmt):
                continue
            backward = self.backward_between(semantic, owner, stmt, node)
            if backward is None:
                continue
            how = Classifier(ctx, owner).nonleaf(binding.value)
            if how is None:
                continue
            reported.add(id(binding))
            receiver = ctx.source.segment(backward.func.value)
            if "\n" in receiver or len(receiver) > 30:
                receiver = "..."
            ctx.report(node, f"`{var}.grad` is None after `{receiver}.backward()`: `{var}` is not a leaf ({how}).",
                       fix=self.fix(ctx, stmt, var),
                       related=[ctx.related(stmt, f"`{var}` is computed here"),
                                ctx.related(backward, "the backward pass")])
        return ()

    @staticmethod
    def kept(semantic, binding, helpers: set[str]) -> bool:
        """The local keeps its gradient, is made a leaf, or is handed to code that may do so."""
        for name in semantic.uses_in(binding.scope, binding.name):
            parent = semantic.parent(name)
            if isinstance(parent, ast.Attribute) and parent.value is name:
                if parent.attr in KEEPS_GRAD or parent.attr in ("requires_grad", "is_leaf"):
                    return True
            if isinstance(parent, ast.keyword):
                parent = semantic.parent(parent)
            if isinstance(parent, ast.Call) and parent.func is not name:
                func = parent.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called in helpers or called in KEEPS_GRAD:
                    return True
                if name in parent.args or any(k.value is name for k in parent.keywords):
                    if isinstance(func, ast.Attribute) and func.attr == "backward":
                        return True  # backward(inputs=[x]) fills x.grad
            if isinstance(parent, (ast.List, ast.Tuple)):
                holder = semantic.parent(parent)
                if isinstance(holder, ast.keyword) and holder.arg == "inputs":
                    return True
        return False

    @staticmethod
    def grad_off(semantic, stmt) -> bool:
        """`stmt` runs under `no_grad()` (a `with` block around it, or a decorator of its function)."""
        switches = [item.context_expr for block in semantic.withs_around(stmt) for item in block.items]
        switches += getattr(semantic.function_of(stmt), "decorator_list", [])
        return any(word in ast.unparse(switch) for switch in switches for word in GRAD_OFF)

    @staticmethod
    def backward_between(semantic, owner, stmt, read):
        """The first `backward()` of `owner` after `stmt` and before `read` (not one given `inputs=`)."""
        for call in semantic.nodes_in(owner, ast.Call):
            if isinstance(call.func, ast.Attribute) and call.func.attr == "backward" and semantic.runs_before(
                    stmt, call) and semantic.runs_before(call, read) and not any(k.arg == "inputs"
                                                                                for k in call.keywords):
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
