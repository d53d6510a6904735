from gradtrace.rules.base import Invalid, Rule, Truth
from gradtrace.rules.gt120_inplace_on_leaf import out_of_place_fix

OUTPUT_OF = "the output of "  # what an in-place layer of an nn.Sequential writes over


class InplaceOnSaved(Rule):
    code = "GT121"
    name = "inplace-on-saved-tensor"
    summary = "In-place operation on a tensor that autograd saved for backward: `backward()` raises."
    severity = "error"
    docs = """
    ## What it does
    Finds in-place operations (`g.mul_(...)`, `h += skip`, `F.relu(h, inplace=True)`) on the output of an
    operation that saves its result for the backward pass (`sigmoid`, `tanh`, `exp`, `softmax`,
    `relu`, `sqrt`, ...), while gradients are being recorded; on one of several views of one tensor
    (`chunk`, `split`, `unbind`) or a view of one (`reshape`, `permute`, `transpose`...); and on the output
    of a custom `torch.autograd.Function` whose `forward` returns its input as is (without
    `ctx.mark_dirty`). In an `nn.Sequential` (also one a factory function
    returns), an in-place layer (`nn.ReLU(inplace=True)`, `nn.Dropout(p, inplace=True)`) right after a layer
    that saves its output (`nn.ReLU`, `nn.Sigmoid`, `nn.Tanh`, `nn.Softmax`) is reported where it is built.
    A `Linear`, convolution or normalisation layer (`LayerNorm`, `BatchNorm*`, `GroupNorm`, `RMSNorm`) saves
    its input for backward: an in-place change of that
    input afterwards (`h = self.fc(x); x += 1`, or an `nn.Sequential` that starts with `nn.ReLU(inplace=True)`
    called on it) is reported too, also when only one arm of a branch saves it (a projection shortcut), and
    across calls: a module whose `forward` changes its input in place
    (`tokens += self.pos`) after another module was given that same tensor and saved it.

    ## Why is this bad?
    The backward of those operations reads their own output, so changing it in place makes
    `backward()` raise. The in-place change bumps its version counter, and the error reads "one of the
    variables needed for gradient computation has been modified by an inplace operation". An in-place
    dropout does so in training as soon as its probability is above 0. Modifying one of several views an
    operation returned (`chunk`, `split`, `unbind`), or the input a custom `Function` returned as is,
    raises "... is a view and is being modified inplace" at once.

    ## Example
    ```python
    g = torch.sigmoid(self.gate(x))
    g.mul_(mask)
    ```

    ## Use instead
    ```python
    g = torch.sigmoid(self.gate(x))
    g = g * mask
    ```

    ## Fix safety
    Safe: the out-of-place form computes the same values and leaves the saved tensor untouched; only
    code that relies on the aliasing side effect would notice.
    """
    valid = (
        """
        import torch

        w = torch.randn(3, requires_grad=True)
        g = torch.sigmoid(w)
        g = g * 2
        g.sum().backward()
        """,
        """
        import torch


        class Double(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, grad):
                return grad * 2


        w = torch.randn(3, requires_grad=True)
        y = Double.apply(w)
        y *= 3
        y.sum().backward()
        """,
        """
        import torch
        import torch.nn as nn


        class Decoder(nn.Module):
            def __init__(self):
                super().__init__()
                self.pos = nn.Parameter(torch.zeros(8), requires_grad=False)
                self.norm = nn.LayerNorm(8)
                self.out = nn.Linear(8, 2)

            def forward(self, tokens):
                h = self.norm(tokens)
                tokens = tokens + self.pos
                tokens.relu_()
                return self.out(h) + tokens.sum()


        class TwoDecoders(nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = nn.Linear(4, 8)
                self.decoder_a = Decoder()
                self.decoder_b = Decoder()

            def forward(self, x):
                codes = self.encoder(x)
                return self.decoder_a(codes), self.decoder_b(codes)


        a, b = TwoDecoders()(torch.randn(3, 4))
        (a.sum() + b.sum()).backward()
        """,
        """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F


        class ConvNorm(nn.Module):
            def __init__(self, cin, cout, activation="relu"):
                super().__init__()
                self.activation = activation
                self.conv = nn.Conv2d(cin, cout, 3, padding=1)
                self.norm = nn.BatchNorm2d(cout)

            def forward(self, x):
                x = self.norm(self.conv(x))
                if self.activation == "relu":
                    return F.relu(x)
                return x


        class ResPath(nn.Module):
            def __init__(self):
                super().__init__()
                self.shortcut = ConvNorm(3, 8)
                self.body = ConvNorm(3, 8, activation="none")

            def forward(self, x):
                shortcut = self.shortcut(x)
                x = self.body(x)
                x += shortcut
                return x


        ResPath()(torch.randn(2, 3, 8, 8)).mean().backward()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn

            stem, norm, head = nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 1)
            x = stem(torch.randn(3, 4))
            h = head(norm(x))
            x += 1.0  # expect: GT121
            (h.sum() + x.sum()).backward()
            """,
            fixed="""
            import torch
            import torch.nn as nn

            stem, norm, head = nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 1)
            x = stem(torch.randn(3, 4))
            h = head(norm(x))
            x = x + 1.0  # expect: GT121
            (h.sum() + x.sum()).backward()
            """,
            truth=Truth(raises=("RuntimeError", "modified by an inplace operation")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Block(nn.Module):
                def __init__(self, c):
                    super().__init__()
                    self.residual = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, padding=1))  # expect: GT121
                    self.shortcut = nn.Conv2d(c, c, 1)

                def forward(self, x):
                    sc = self.shortcut(x)
                    return self.residual(x) + sc


            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.stem = nn.Conv2d(3, 8, 3, padding=1)
                    self.block = Block(8)

                def forward(self, x):
                    return self.block(self.stem(x)).mean()


            net = Net()
            net(torch.randn(2, 3, 8, 8)).backward()
            """,
            truth=Truth(raises=("RuntimeError", "modified by an inplace operation")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class ScaleInPlace(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x, factor):
                    ctx.factor = factor
                    x.mul_(factor)
                    return x

                @staticmethod
                def backward(ctx, grad):
                    return grad * ctx.factor, None


            layer = nn.Linear(4, 2)
            out = ScaleInPlace.apply(layer(torch.randn(3, 4)), 0.5)
            out += 1.0  # expect: GT121
            out.sum().backward()
            """,
            truth=Truth(raises=("RuntimeError", "is a view and is being modified inplace")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn

            gate = nn.Linear(4, 4)
            opt = torch.optim.SGD(gate.parameters(), lr=0.1)
            g = torch.sigmoid(gate(torch.randn(2, 4)))
            g.mul_(torch.rand(2, 4))  # expect: GT121
            loss = g.sum()
            loss.backward()
            """,
            fixed="""
            import torch
            import torch.nn as nn

            gate = nn.Linear(4, 4)
            opt = torch.optim.SGD(gate.parameters(), lr=0.1)
            g = torch.sigmoid(gate(torch.randn(2, 4)))
            g = g * torch.rand(2, 4)  # expect: GT121
            loss = g.sum()
            loss.backward()
            """,
            truth=Truth(raises=("RuntimeError", "modified by an inplace operation")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn

            net = nn.Linear(4, 4)
            means, log_stds = net(torch.randn(2, 4)).chunk(2, dim=-1)
            log_stds.clamp_(-20, 2)  # expect: GT121
            (means + log_stds.exp()).sum().backward()
            """,
            fixed="""
            import torch
            import torch.nn as nn

            net = nn.Linear(4, 4)
            means, log_stds = net(torch.randn(2, 4)).chunk(2, dim=-1)
            log_stds = log_stds.clamp(-20, 2)  # expect: GT121
            (means + log_stds.exp()).sum().backward()
            """,
            truth=Truth(raises=("RuntimeError", "is a view and is being modified inplace")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            def make_mlp(d_in, d_hidden, d_out, p_drop=0.2):
                return nn.Sequential(
                    nn.Linear(d_in, d_hidden),
                    nn.ReLU(),
                    nn.Dropout(p_drop, inplace=True),  # expect: GT121
                    nn.Linear(d_hidden, d_out),
                )


            class Fusion(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.head = make_mlp(8, 16, 2)

                def forward(self, x):
                    return self.head(x)


            model = Fusion()
            opt = torch.optim.Adam(model.parameters())
            model(torch.randn(4, 8)).sum().backward()
            """,
            truth=Truth(raises=("RuntimeError", "modified by an inplace operation")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Decoder(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.pos = nn.Parameter(torch.zeros(8), requires_grad=False)
                    self.norm = nn.LayerNorm(8)
                    self.out = nn.Linear(8, 2)

                def forward(self, tokens):
                    tokens += self.pos  # expect: GT121
                    return self.out(self.norm(tokens))


            class TwoDecoders(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.encoder = nn.Linear(4, 8)
                    self.decoder_a = Decoder()
                    self.decoder_b = Decoder()

                def forward(self, x):
                    codes = self.encoder(x)
                    return self.decoder_a(codes), self.decoder_b(codes)


            a, b = TwoDecoders()(torch.randn(3, 4))
            (a.sum() + b.sum()).backward()
            """,
            fixed="""
            import torch
            import torch.nn as nn


            class Decoder(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.pos = nn.Parameter(torch.zeros(8), requires_grad=False)
                    self.norm = nn.LayerNorm(8)
                    self.out = nn.Linear(8, 2)

                def forward(self, tokens):
                    tokens = tokens + self.pos  # expect: GT121
                    return self.out(self.norm(tokens))


            class TwoDecoders(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.encoder = nn.Linear(4, 8)
                    self.decoder_a = Decoder()
                    self.decoder_b = Decoder()

                def forward(self, x):
                    codes = self.encoder(x)
                    return self.decoder_a(codes), self.decoder_b(codes)


            a, b = TwoDecoders()(torch.randn(3, 4))
            (a.sum() + b.sum()).backward()
            """,
            truth=Truth(raises=("RuntimeError", "modified by an inplace operation")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class PreActBlock(nn.Module):
                def __init__(self, c_in, c_out, stride=1):
                    super().__init__()
                    self.body = nn.Sequential(
                        nn.ReLU(inplace=True),  # expect: GT121
                        nn.Conv2d(c_in, c_out, 3, stride, 1),
                    )
                    self.project = None
                    if stride != 1 or c_in != c_out:
                        self.project = nn.Conv2d(c_in, c_out, 1, stride)

                def forward(self, x):
                    if self.project is not None:
                        skip = self.project(x)
                    else:
                        skip = x
                    return self.body(x) + skip


            net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), PreActBlock(8, 8), PreActBlock(8, 16, stride=2))
            net(torch.randn(2, 3, 8, 8)).sum().backward()
            """,
            truth=Truth(raises=("RuntimeError", "modified by an inplace operation")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            class Attention(nn.Module):
                def __init__(self, dim=8, heads=2):
                    super().__init__()
                    self.heads, self.scale = heads, (dim // heads) ** -0.5
                    self.to_qkv = nn.Linear(dim, dim * 3, bias=False)

                def forward(self, x):
                    b, n, _ = x.shape
                    q, k, v = self.to_qkv(x).chunk(3, dim=-1)
                    q, k, v = map(lambda t: t.reshape(b, n, self.heads, -1).permute(0, 2, 1, 3), (q, k, v))
                    q *= self.scale  # expect: GT121
                    return ((q @ k.transpose(-1, -2)).softmax(-1) @ v).sum()


            Attention()(torch.randn(2, 5, 8)).backward()
            """,
            fixed="""
            import torch
            import torch.nn as nn


            class Attention(nn.Module):
                def __init__(self, dim=8, heads=2):
                    super().__init__()
                    self.heads, self.scale = heads, (dim // heads) ** -0.5
                    self.to_qkv = nn.Linear(dim, dim * 3, bias=False)

                def forward(self, x):
                    b, n, _ = x.shape
                    q, k, v = self.to_qkv(x).chunk(3, dim=-1)
                    q, k, v = map(lambda t: t.reshape(b, n, self.heads, -1).permute(0, 2, 1, 3), (q, k, v))
                    q = q * self.scale  # expect: GT121
                    return ((q @ k.transpose(-1, -2)).softmax(-1) @ v).sum()


            Attention()(torch.randn(2, 5, 8)).backward()
            """,
            truth=Truth(raises=("RuntimeError", "is a view and is being modified inplace")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            import torch.nn.functional as F

            layer = nn.Linear(4, 8)
            h = F.relu(layer(torch.randn(3, 4)))
            h = F.dropout(h, 0.2, training=True, inplace=True)  # expect: GT121
            h.sum().backward()
            """,
            truth=Truth(raises=("RuntimeError", "modified by an inplace operation")),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            import torch.nn.functional as F


            class ConvNorm(nn.Module):
                def __init__(self, cin, cout, activation="relu"):
                    super().__init__()
                    self.activation = activation
                    self.conv = nn.Conv2d(cin, cout, 3, padding=1)
                    self.norm = nn.BatchNorm2d(cout)

                def forward(self, x):
                    x = self.norm(self.conv(x))
                    if self.activation == "relu":
                        return F.relu(x)
                    return x


            class ResPath(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.shortcut = ConvNorm(3, 8, activation="none")
                    self.body = ConvNorm(3, 8)

                def forward(self, x):
                    shortcut = self.shortcut(x)
                    x = self.body(x)
                    x += shortcut  # expect: GT121
                    return x


            ResPath()(torch.randn(2, 3, 8, 8)).mean().backward()
            """,
            truth=Truth(raises=("RuntimeError", "modified by an inplace operation")),
        ),
    )

    def check(self, ctx):
        for event in ctx.torch.flow.inplace:
            if event.module.path != ctx.path or event.grad_off:
                continue
            target = event.target
            if target.leaf or not target.srcs or not target.saved_by:
                continue
            fix = out_of_place_fix(ctx, event.node, event.stmt, event.var)
            if target.saved_by.startswith("functionview:"):
                function = target.saved_by.split(":", 1)[1]
                ctx.report(event.node, f"`{event.var}` is the input `{function}.forward` returned as is: `{event.op}` "
                           "on it raises.", fix=fix)
                continue
            if target.saved_by.startswith("multiview:"):
                maker = target.saved_by.split(":", 1)[1]
                ctx.report(event.node, f"`{event.var}` is one of the views `{maker}` returned: `{event.op}` on it raises.", fix=fix)
                continue
            when = " in training" if "Dropout" in event.op or "dropout" in event.op else ""
            layer = event.var[len(OUTPUT_OF):] if event.var.startswith(OUTPUT_OF) else None
            if layer is not None and layer.strip("`") == target.saved_by:  # in-place layer in an nn.Sequential
                text = f"{layer} saved its output for backward: `{event.op}` right after it changes that output"
            else:
                subject = f"The output of {layer}" if layer is not None else f"`{event.var}`"
                text = f"{subject} was saved by `{target.saved_by}` for backward: `{event.op}` changes it"
            ctx.report(
                event.node,
                f"{text}, so `backward()` raises{when}.",
                fix=fix,
            )
        return ()
