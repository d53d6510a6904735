import ast

from gradtrace.findings import Edit, Fix
from gradtrace.rules.base import Invalid, Rule, Truth
from gradtrace.rules.gt133_module_requires_grad_attr import resolve_module

EMBEDDINGS = {"torch.nn.Embedding", "torch.nn.EmbeddingBag", "torch.nn.modules.sparse.Embedding",
              "torch.nn.modules.sparse.EmbeddingBag", "torch.nn.modules.Embedding", "torch.nn.modules.EmbeddingBag"}


def frozen_pretrained(ctx, call: ast.Call) -> str | None:
    """`nn.Embedding`/`nn.EmbeddingBag` when `call` is their `from_pretrained` left at `freeze=True`."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr == "from_pretrained"):
        return None
    layer = ctx.names.qualname(func.value)
    if layer not in EMBEDDINGS:
        return None
    if len(call.args) >= 2 or any(k.arg in ("freeze", None) for k in call.keywords):
        return None
    if any(isinstance(a, ast.Starred) for a in call.args):
        return None
    return "nn." + layer.split(".")[-1]


def unfreezes(ctx) -> bool:
    """Whether the file turns `requires_grad` on anywhere (then the embedding may be unfrozen on purpose)."""
    for node in ctx.source.nodes(ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "requires_grad_":
            arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "requires_grad"),
                                                      None)
            if arg is None or not (isinstance(arg, ast.Constant) and arg.value is False):
                return True
    for node in ctx.source.nodes(ast.Assign):
        if any(isinstance(t, ast.Attribute) and t.attr == "requires_grad" for t in node.targets):
            if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                return True
    return False


def optimizer_arguments(ctx):
    """(optimizer call, argument expressions) of `torch.optim.X(...)` and `opt.add_param_group(...)`."""
    for call in ctx.source.nodes(ast.Call):
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr == "add_param_group":
            yield call, list(call.args)
            continue
        qn = ctx.names.qualname(func) or ""
        if qn.startswith("torch.optim.") and qn.count(".") == 2 and qn.split(".")[-1][:1].isupper():
            params = call.args[:1] + [k.value for k in call.keywords if k.arg == "params"]
            yield call, params


def trained_references(semantic, argument: ast.AST):
    """`X.parameters()` / `X.weight` inside an optimizer argument: (X, node), without `requires_grad` filters."""
    for node in ast.walk(argument):
        if not isinstance(node, ast.Attribute):
            continue
        if node.attr == "weight":
            yield node.value, node
        elif node.attr == "parameters":
            parent = semantic.parent(node)
            if isinstance(parent, ast.Call) and parent.func is node:
                yield node.value, parent


class FrozenPretrainedEmbeddingOptimized(Rule):
    code = "GT135"
    name = "frozen-pretrained-embedding-optimized"
    summary = "`nn.Embedding.from_pretrained` freezes by default, yet its parameters are handed to the optimizer."
    docs = """
    ## What it does
    Finds `nn.Embedding.from_pretrained(...)` / `nn.EmbeddingBag.from_pretrained(...)` called without
    `freeze=False`, whose parameters are then explicitly given to an optimizer or a parameter group
    (`{"params": model.embedding.parameters(), "lr": 1e-4}`, `emb.weight` in the optimizer's list).
    Optimizers built over `model.parameters()` only are not flagged: keeping the embedding frozen may be
    what you want there.

    ## Why is this bad?
    `freeze` defaults to `True`: the embedding's weight does not require grad, never gets a gradient
    (its `.grad` stays None), and the optimizer silently skips it although the code asked for it to be
    fine-tuned (often with its own learning rate).

    ## Example
    ```python
    self.embedding = nn.EmbeddingBag.from_pretrained(vectors, mode="mean")
    ...
    optimizer = torch.optim.Adam([
        {"params": model.embedding.parameters(), "lr": 1e-4},
        {"params": model.classifier.parameters(), "lr": 1e-3},
    ])
    ```

    ## Use instead
    ```python
    self.embedding = nn.EmbeddingBag.from_pretrained(vectors, mode="mean", freeze=False)
    ```

    ## Fix safety
    Unsafe: `freeze=False` makes the embedding train, which changes the model's results; drop the
    embedding from the optimizer instead if freezing was intended.
    """
    valid = (
        """
        import torch
        import torch.nn as nn


        class Tagger(nn.Module):
            def __init__(self, vectors):
                super().__init__()
                self.embedding = nn.Embedding.from_pretrained(vectors)
                self.tuned = nn.Embedding.from_pretrained(vectors, freeze=False)
                self.head = nn.Linear(vectors.size(1), 3)

            def forward(self, tokens):
                return self.head(self.embedding(tokens) + self.tuned(tokens))


        model = Tagger(torch.randn(10, 4))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        tuned = torch.optim.SGD([{"params": model.tuned.parameters(), "lr": 1e-4},
                                 {"params": model.head.parameters()}])
        """,
        """
        import torch
        import torch.nn as nn

        emb = nn.Embedding.from_pretrained(torch.randn(10, 4), padding_idx=0)
        head = nn.Linear(4, 2)
        emb.weight.requires_grad = True
        opt = torch.optim.Adam([emb.weight, *head.parameters()])
        """,
        """
        import torch
        import torch.nn as nn

        frozen = nn.EmbeddingBag.from_pretrained(torch.randn(10, 4))
        head = nn.Linear(4, 2)
        opt = torch.optim.SGD(filter(lambda p: p.requires_grad, frozen.parameters()), lr=0.1)
        frozen = nn.Embedding(10, 4)
        opt2 = torch.optim.SGD(frozen.parameters(), lr=0.1)
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn
            import torch.nn.functional as F


            class BagOfWords(nn.Module):
                def __init__(self, vectors, n_cls=4):
                    super().__init__()
                    self.embedding = nn.EmbeddingBag.from_pretrained(vectors, mode="mean")  # expect: GT135
                    self.classifier = nn.Linear(vectors.size(1), n_cls)

                def forward(self, tokens, offsets):
                    return self.classifier(self.embedding(tokens, offsets))


            model = BagOfWords(torch.randn(100, 16))
            optimizer = torch.optim.Adam([
                {"params": model.embedding.parameters(), "lr": 1e-4},
                {"params": model.classifier.parameters(), "lr": 1e-3},
            ])
            tokens, offsets = torch.randint(0, 100, (30,)), torch.tensor([0, 7, 15, 22])
            loss = F.cross_entropy(model(tokens, offsets), torch.randint(0, 4, (4,)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            """,
            truth=Truth(grads={"model.embedding.weight": "none"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn

            emb = nn.Embedding.from_pretrained(torch.randn(10, 4), padding_idx=0)  # expect: GT135
            head = nn.Linear(4, 2)
            opt = torch.optim.SGD([emb.weight, *head.parameters()], lr=0.1)
            loss = head(emb(torch.tensor([1, 2, 3]))).sum()
            loss.backward()
            opt.step()
            """,
            truth=Truth(grads={"emb.weight": "none"}),
        ),
    )

    def check(self, ctx):
        if "from_pretrained" not in ctx.source.text:
            return ()
        candidates = []  # (call, layer, holder: "self" attr name or variable name, assign)
        for assign in ctx.source.nodes(ast.Assign):
            value = assign.value
            if not (isinstance(value, ast.Call) and len(assign.targets) == 1):
                continue
            layer = frozen_pretrained(ctx, value)
            if layer is None:
                continue
            target = assign.targets[0]
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                candidates.append((value, layer, target, "attr"))
            elif isinstance(target, ast.Name):
                candidates.append((value, layer, target, "var"))
        if not candidates or unfreezes(ctx):
            return ()
        optimizers = list(optimizer_arguments(ctx))
        for call, layer, target, kind in candidates:
            found = self.find_optimizer(ctx, optimizers, target, kind)
            if found is None:
                continue
            optimizer, reference = found
            line = ctx.span(optimizer).line
            ctx.report(call, f"`{layer}.from_pretrained` freezes its weight (no gradient), yet line {line} gives it to "
                       "the optimizer.", fix=self.fix(ctx, call),
                       related=[ctx.related(reference, "the frozen embedding is given to the optimizer here")])
        return ()

    def find_optimizer(self, ctx, optimizers, target, kind):
        semantic = ctx.source.semantic
        if kind == "attr":
            holder = semantic.scope_of(target).parent
            cls = ctx.torch.module.classes.get(holder.node.name) if holder and holder.kind == "class" else None
            if cls is None or cls.node is not holder.node:
                return None
            same_name = [c for c in ctx.torch.module.classes.values() if target.attr in c.attrs and c is not cls]
        else:
            binding = semantic.binding_of(target)
        for optimizer, arguments in optimizers:
            for argument in arguments:
                if "requires_grad" in ctx.source.segment(argument):
                    continue
                for base, reference in trained_references(semantic, argument):
                    if kind == "var":
                        if isinstance(base, ast.Name) and semantic.sole_binding(base) is binding:
                            return optimizer, reference
                        continue
                    if not (isinstance(base, ast.Attribute) and base.attr == target.attr):
                        continue
                    ref = resolve_module(ctx, base.value)
                    if ref is not None and ref.cls is cls:
                        return optimizer, reference
                    if ref is None and not same_name and isinstance(base.value, ast.Name):
                        return optimizer, reference
        return None

    @staticmethod
    def fix(ctx, call: ast.Call) -> Fix | None:
        last = max([*call.args, *call.keywords], key=lambda n: (n.end_lineno, n.end_col_offset), default=None)
        if last is None:
            return None
        span = ctx.span(last)
        return Fix("Pass `freeze=False` (the embedding will train)", False,
                   (Edit(span.end_line, span.end_column, span.end_line, span.end_column, ", freeze=False"),))
