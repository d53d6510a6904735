import ast

from gradtrace.rules.base import Invalid, Rule, Truth

FUNCTION_BASES = {"torch.autograd.Function", "torch.autograd.function.Function", "torch.autograd.InplaceFunction",
                  "torch.autograd.function.InplaceFunction"}
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _is_none(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def gradient_names(param: str) -> set[str]:
    return {f"grad_{param}", f"{param}_grad", f"grad{param}", f"d{param}", f"d_{param}", f"grad_{param}_"}


class Signature:
    """What `forward` takes (its inputs, ctx excluded) and how `apply` is called in this file."""

    def __init__(self, cls: ast.ClassDef, forward: ast.FunctionDef, backward: ast.FunctionDef, apply_calls):
        self.cls = cls
        self.backward = backward
        args = forward.args
        positional = args.posonlyargs + args.args
        with_ctx = "setup_context" not in {n.name for n in cls.body if isinstance(n, FUNCTIONS)}
        self.inputs = [a.arg for a in positional[1 if with_ctx else 0:]]
        self.variadic = args.vararg is not None
        self.required = len(self.inputs) - len(args.defaults)
        arities = {len(c.args) for c in apply_calls}
        self.calls = apply_calls
        self.expected = arities.pop() if len(arities) == 1 and self.required < len(self.inputs) else None
        if self.required == len(self.inputs):
            self.expected = len(self.inputs)
        grads = backward.args.posonlyargs + backward.args.args
        self.grad_params = {a.arg for a in grads[1:]}
        if backward.args.vararg is not None:
            self.grad_params.add(backward.args.vararg.arg)

    def constant_inputs(self) -> dict[int, tuple[ast.Call, ast.Constant]]:
        """Positions where some `apply` call passes a Python number, string or bool (not a tensor)."""
        found = {}
        for call in self.calls:
            for index, arg in enumerate(call.args):
                if isinstance(arg, ast.Constant) and isinstance(arg.value, (int, float, str, bool)):
                    found.setdefault(index, (call, arg))
        return found


def apply_calls(ctx, cls: ast.ClassDef) -> list[ast.Call]:
    """`Cls.apply(...)` calls, directly or through `fn = Cls.apply`, without starred or keyword arguments."""
    semantic = ctx.source.semantic
    calls = []
    for use in semantic.uses_of(semantic.binding_of(cls)):
        apply = semantic.parent(use)
        holder = semantic.parent(apply)
        if not (isinstance(apply, ast.Attribute) and apply.attr == "apply"):
            continue
        if isinstance(holder, ast.Call) and holder.func is apply:
            calls.append(holder)
        elif isinstance(holder, ast.Assign) and holder.value is apply:
            calls += [call for alias in semantic.made_by(holder) for call in semantic.calls_of(alias)]
    if any(call.keywords or any(isinstance(a, ast.Starred) for a in call.args) for call in calls):
        return []  # unsure what reaches forward
    return sorted(calls, key=lambda call: (call.lineno, call.col_offset))


def definitely_not_none(semantic, node: ast.AST, backward: ast.FunctionDef, grad_params: set[str],
                        materialize: bool) -> bool:
    if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Call)):
        return True
    if not isinstance(node, ast.Name):
        return False
    if node.id in grad_params:
        return materialize
    bindings = semantic.scopes[id(backward)].bindings.get(node.id, [])
    return bool(bindings) and all(b.kind == "assignment" and isinstance(b.value, (ast.BinOp, ast.UnaryOp, ast.Call))
                                  for b in bindings)


class CustomFunctionBackwardMismatch(Rule):
    code = "GT134"
    name = "custom-function-backward-mismatch"
    summary = "A custom `autograd.Function`'s `backward` returns gradients that do not match `forward`'s inputs."
    severity = "error"
    docs = """
    ## What it does
    In a `torch.autograd.Function` subclass, compares what `backward` returns with what `forward` takes:
    - a returned tuple with fewer gradients than `forward` has inputs (or more, beyond trailing `None`s);
    - a gradient returned at the position of an input that `apply` is given as a Python number or string;
    - a gradient named for one input (`grad_x`) returned at another input's position while `None` stands
      at that input's own position: the order is swapped.

    ## Why is this bad?
    `backward` must return one gradient per `forward` input, in order. A wrong count raises
    "function XBackward returned an incorrect number of gradients". A gradient for a non-tensor input
    raises "returned a gradient different than None at position N, but the corresponding forward input was
    not a Variable". When both inputs are tensors of the same shape, a swapped order raises nothing: the
    input whose position holds `None` silently gets no gradient (its `.grad` stays None) and the layers
    before it never train. A gradient named for one input (`grad_x`) returned at another input's
    position, while that input's own position holds `None`, usually means the order is swapped.

    ## Example
    ```python
    class SoftClamp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, limit):
            ctx.save_for_backward(x)
            ctx.limit = limit
            return x.clamp(-limit, limit)

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            grad_x = grad_output * (x.abs() < 1.5 * ctx.limit)
            return None, grad_x
    ```

    ## Use instead
    ```python
            return grad_x, None
    ```

    ## Fix safety
    No automatic fix: which gradient belongs where needs a human decision.
    """
    valid = (
        """
        import torch


        class Masked(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, mask):
                ctx.save_for_backward(x, mask)
                return x * mask

            @staticmethod
            def backward(ctx, grad_output):
                x, mask = ctx.saved_tensors
                return grad_output * mask, None


        class Reverse(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale=1.0):
                ctx.scale = scale
                return x.view_as(x)

            @staticmethod
            def backward(ctx, grad_output):
                return -grad_output * ctx.scale, None, None


        class Mul(torch.autograd.Function):
            @staticmethod
            def forward(ctx, a, b):
                ctx.save_for_backward(a, b)
                return a * b

            @staticmethod
            def backward(ctx, grad):
                a, b = ctx.saved_tensors
                grad_a = grad_b = None
                if ctx.needs_input_grad[0]:
                    grad_a = grad * b
                if ctx.needs_input_grad[1]:
                    grad_b = grad * a
                return grad_a, grad_b


        class Identity(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.clone()

            @staticmethod
            def backward(ctx, grad):
                return grad


        y = Masked.apply(torch.randn(3, requires_grad=True), torch.ones(3))
        z = Reverse.apply(y, 0.5) + Mul.apply(y, y) + Identity.apply(y)
        """,
        """
        import torch


        class Square(torch.autograd.Function):
            @staticmethod
            def forward(x, scale):
                return x * x * scale

            @staticmethod
            def setup_context(ctx, inputs, output):
                x, scale = inputs
                ctx.save_for_backward(x)
                ctx.scale = scale

            @staticmethod
            def backward(ctx, grad):
                (x,) = ctx.saved_tensors
                return 2 * x * grad * ctx.scale, None


        out = Square.apply(torch.randn(3, requires_grad=True), 3.0)
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn


            class SoftClamp(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x, limit):
                    ctx.save_for_backward(x)
                    ctx.limit = limit
                    return x.clamp(-limit, limit)

                @staticmethod
                def backward(ctx, grad_output):
                    (x,) = ctx.saved_tensors
                    grad_x = grad_output * (x.abs() < 1.5 * ctx.limit).to(grad_output.dtype)
                    return None, grad_x  # expect: GT134


            body = nn.Linear(6, 2)
            mean = SoftClamp.apply(body(torch.randn(4, 6)), 2.0)
            mean.sum().backward()
            """,
            truth=Truth(raises=("RuntimeError", "returned a gradient different than None at position 2, but the "
                                "corresponding forward input was not a Variable")),
        ),
        Invalid(
            """
            import torch


            class Blend(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x, weight):
                    ctx.save_for_backward(x, weight)
                    return x * weight

                @staticmethod
                def backward(ctx, grad_output):
                    x, weight = ctx.saved_tensors
                    grad_x = grad_output * weight
                    return None, grad_x  # expect: GT134


            x = torch.randn(3, requires_grad=True)
            weight = torch.rand(3)
            Blend.apply(x, weight).sum().backward()
            """,
            truth=Truth(grads={"x": "none"}),
        ),
        Invalid(
            """
            import torch


            class Scale(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x, factor):
                    ctx.save_for_backward(factor)
                    return x * factor

                @staticmethod
                def backward(ctx, grad_output):
                    (factor,) = ctx.saved_tensors
                    return (grad_output * factor,)  # expect: GT134


            x = torch.randn(3, requires_grad=True)
            Scale.apply(x, torch.full((3,), 2.0)).sum().backward()
            """,
            truth=Truth(raises=("RuntimeError", "returned an incorrect number of gradients (expected 2, got 1)")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class BinarizeSTE(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x, threshold):
                    ctx.save_for_backward(x)
                    return (x > threshold).float() * 2 - 1

                @staticmethod
                def backward(ctx, grad_output):
                    (x,) = ctx.saved_tensors
                    return grad_output * (x.abs() <= 1).float()  # expect: GT134


            enc = nn.Linear(4, 3)
            code = BinarizeSTE.apply(enc(torch.randn(2, 4)), 0.0)
            code.sum().backward()
            """,
            truth=Truth(raises=("RuntimeError", "incorrect number of gradients")),
        ),
    )

    def check(self, ctx):
        if "Function" not in ctx.source.text or "backward" not in ctx.source.text:
            return ()
        for cls in ctx.source.nodes(ast.ClassDef):
            if not any(ctx.names.qualname(b) in FUNCTION_BASES for b in cls.bases):
                continue
            methods = {n.name: n for n in cls.body if isinstance(n, FUNCTIONS)}
            forward, backward = methods.get("forward"), methods.get("backward")
            if forward is None or backward is None:
                continue
            sig = Signature(cls, forward, backward, apply_calls(ctx, cls))
            if sig.variadic:
                continue
            materialize = "set_materialize_grads" not in ctx.source.segment(cls)
            for node in ctx.source.semantic.nodes_in(backward, ast.Return):
                if node.value is not None:
                    self.check_return(ctx, sig, node, materialize)
        return ()

    def check_return(self, ctx, sig: Signature, ret: ast.Return, materialize: bool):
        value = ret.value
        if isinstance(value, ast.Tuple):
            if any(isinstance(e, ast.Starred) for e in value.elts):
                return
            grads = list(value.elts)
        elif isinstance(value, ast.Name) and value.id in sig.grad_params or single_tensor(value, sig.grad_params):
            grads = [value]
        else:
            return
        count, total = len(grads), len(sig.inputs)
        expected = sig.expected
        limit = expected if expected is not None else total
        too_few = count < (expected if expected is not None else sig.required)
        too_many = count > limit and any(not _is_none(g) for g in grads[limit:])
        if too_few or too_many:
            takes = (f"`apply` passes {expected} input{'s' if expected != 1 else ''}" if expected is not None
                     and expected != total else f"`forward` takes {total} input{'s' if total != 1 else ''}")
            ctx.report(ret, f"`backward` returns {count} gradient{'s' if count != 1 else ''}, but {takes}: torch "
                       "raises RuntimeError.")
            return
        swapped = self.swapped(sig, grads)
        constants = sig.constant_inputs()
        for position, grad in enumerate(grads[:total]):
            if position not in constants or _is_none(grad):
                continue
            if not definitely_not_none(ctx.source.semantic, grad, sig.backward, sig.grad_params, materialize):
                continue
            call, _ = constants[position]
            line = ctx.span(call).line
            why = " (order swapped?)" if position in swapped else ""
            ctx.report(ret, f"`backward` returns a gradient for `{sig.inputs[position]}`, a Python "
                       f"{type(constants[position][1].value).__name__} on line {line}: this raises RuntimeError{why}.",
                       related=[ctx.related(call, "the non-tensor input is passed here")])
            return
        for position, (owner, grad) in sorted(swapped.items()):
            ctx.report(ret, f"`backward` returns `{ctx.source.segment(grad)}` in the slot of `{sig.inputs[position]}` "
                       f"and None for `{sig.inputs[owner]}`, which gets no gradient.", severity="warning")
            return

    @staticmethod
    def swapped(sig: Signature, grads: list[ast.AST]) -> dict[int, tuple[int, ast.AST]]:
        """position -> (input it is named for, the returned node) where that input's own slot holds None."""
        found = {}
        for position, grad in enumerate(grads[:len(sig.inputs)]):
            if not isinstance(grad, ast.Name):
                continue
            if grad.id in gradient_names(sig.inputs[position]):
                continue
            for owner, param in enumerate(sig.inputs):
                if owner != position and grad.id in gradient_names(param) and owner < len(grads) and _is_none(
                        grads[owner]):
                    found[position] = (owner, grad)
        return found


# methods of a tensor that return several tensors (a tuple), not one
SPLITTING_METHODS = frozenset({"split", "chunk", "unbind", "tensor_split", "hsplit", "vsplit", "dsplit"})


def single_tensor(value: ast.AST, grad_params) -> bool:
    """An expression that is one tensor, never a tuple of them: arithmetic on tensors (`grad_output * mask`,
    `-grad_output`), or a method of the incoming gradient that keeps it one tensor (`grad_output.clone()`)."""
    if isinstance(value, (ast.BinOp, ast.UnaryOp)):
        return not any(isinstance(n, (ast.Tuple, ast.List)) for n in ast.walk(value))
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute):
        receiver = value.func.value
        return isinstance(receiver, ast.Name) and receiver.id in grad_params and \
            value.func.attr not in SPLITTING_METHODS
    return False
