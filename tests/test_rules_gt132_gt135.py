"""Look-alikes GT132-GT135 must stay quiet on, and shapes beyond their own examples they must catch."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source
from gradtrace.fixes.apply import apply_edits


def found(code: str, text: str) -> list:
    source = textwrap.dedent(text).lstrip("\n")
    return [f for f in check_source(source, "example.py").findings if f.code == code]


def lines(code: str, text: str) -> list[int]:
    return sorted(f.line for f in found(code, text))


QUIET = {
    "GT132": [
        """
        import torch

        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        print(opt.step)
        fn = opt.zero_grad if True else None
        """,
    ],
    "GT133": [
        """
        import torch.nn as nn

        model = nn.Sequential(nn.Linear(2, 2))
        for p in model.parameters():
            p.requires_grad = False
        for name, p in model.named_parameters():
            p.requires_grad = "0." in name
        """,
        """
        import torch
        import torch.nn as nn


        def set_flag(obj, flag):
            obj.requires_grad = flag


        set_flag(nn.Linear(2, 2).weight, False)
        set_flag(torch.zeros(2), True)
        model = load_model()
        model.requires_grad = False
        """,
        """
        import torch.nn as nn


        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(2, 2)

            def freeze(self):
                self.requires_grad = False


        block = Block()
        block.requires_grad = True
        """,
    ],
    "GT134": [
        """
        import torch


        class Clip(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, low=0.0, high=1.0):
                ctx.save_for_backward(x)
                return x.clamp(low, high)

            @staticmethod
            def backward(ctx, grad):
                (x,) = ctx.saved_tensors
                if not ctx.needs_input_grad[0]:
                    return None, None, None
                return grad * (x > 0), None, None


        a = Clip.apply(torch.randn(3, requires_grad=True))
        b = Clip.apply(torch.randn(3, requires_grad=True), -1.0, 1.0)
        """,
        """
        import torch


        class Pair(torch.autograd.Function):
            @staticmethod
            def forward(ctx, a, b):
                ctx.set_materialize_grads(False)
                return a * 2, b * 2

            @staticmethod
            def backward(ctx, grad_a, grad_b):
                return grad_a, grad_b


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, factor):
                ctx.factor = factor
                return x * factor

            @staticmethod
            def backward(ctx, grad):
                grad_factor = None
                return grad * ctx.factor, grad_factor


        out = Pair.apply(torch.randn(2, requires_grad=True), torch.randn(2))
        y = Scale.apply(torch.randn(2, requires_grad=True), 3)
        """,
    ],
    "GT135": [
        """
        import torch
        import torch.nn as nn

        a = nn.Embedding.from_pretrained(torch.randn(5, 2), False)
        b = nn.Embedding.from_pretrained(torch.randn(5, 2), freeze=FREEZE)
        opts = {"freeze": False}
        c = nn.Embedding.from_pretrained(torch.randn(5, 2), **opts)
        opt = torch.optim.SGD([*a.parameters(), *b.parameters(), *c.parameters()], lr=0.1)
        """,
        """
        import torch
        import torch.nn as nn


        class Text(nn.Module):
            def __init__(self, vectors):
                super().__init__()
                self.embedding = nn.Embedding.from_pretrained(vectors)


        def finetune(model):
            model.embedding.requires_grad_()
            return torch.optim.Adam([{"params": model.embedding.parameters(), "lr": 1e-4}])
        """,
        """
        import torch
        import torch.nn as nn


        class Frozen(nn.Module):
            def __init__(self, vectors):
                super().__init__()
                self.embedding = nn.Embedding.from_pretrained(vectors)


        class Tuned(nn.Module):
            def __init__(self):
                super().__init__()
                self.embedding = nn.Embedding(10, 4)


        def make_optimizer(model):
            return torch.optim.Adam(model.embedding.parameters())
        """,
    ],
}


@pytest.mark.parametrize(("code", "text"), [(c, t) for c, ts in QUIET.items() for t in ts],
                         ids=[f"{c}-{i}" for c, ts in QUIET.items() for i in range(len(ts))])
def test_look_alikes_stay_quiet(code, text):
    assert found(code, text) == []


def test_gt132_every_method_and_receiver_chain():
    text = """
    import torch

    class Trainer:
        def run(self, loss, h):
            h.retain_grad
            self.model.train
            loss.backward
            self.optimizer.step
    """
    got = found("GT132", text)
    assert [f.line for f in got] == [5, 6, 7, 8]
    assert "`h.grad` stays None" in got[0].message


def test_gt133_named_modules_and_annotated_parameter():
    text = """
    import torch.nn as nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(2, 2))
            self.head = nn.Linear(2, 1)


    def freeze(net: Net):
        net.encoder.requires_grad = False
        for _, m in net.named_children():
            m.requires_grad = False
    """
    got = found("GT133", text)
    assert [f.line for f in got] == [12, 14]
    fixed = apply_edits(textwrap.dedent(text).lstrip("\n"), [e for f in got for e in f.fix.edits])
    assert "net.encoder.requires_grad_(False)" in fixed and "m.requires_grad_(False)" in fixed


def test_gt133_call_sites_must_agree():
    text = """
    import torch
    import torch.nn as nn


    def toggle(thing):
        thing.requires_grad = True


    toggle(nn.Linear(2, 2))
    toggle(torch.zeros(2))
    """
    assert found("GT133", text) == []


def test_gt134_count_and_alias_apply():
    text = """
    import torch


    class Gate(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, mask, scale):
            ctx.save_for_backward(mask)
            return x * mask * scale

        @staticmethod
        def backward(ctx, grad_output):
            (mask,) = ctx.saved_tensors
            return grad_output


    gate = Gate.apply
    y = gate(torch.randn(2, requires_grad=True), torch.ones(2), torch.tensor(2.0))
    """
    got = found("GT134", text)
    assert [f.line for f in got] == [13]
    assert got[0].severity == "error" and "returns 1 gradient, but `forward` takes 3 inputs" in got[0].message


def test_gt134_fully_swapped_gradients_are_not_claimed():
    text = """
    import torch


    class Mul(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, grad):
            a, b = ctx.saved_tensors
            grad_a, grad_b = grad * b, grad * a
            return grad_b, grad_a
    """
    assert found("GT134", text) == []


def test_gt135_fix_adds_freeze_false_unsafe():
    text = """
    import torch
    import torch.nn as nn

    emb = nn.EmbeddingBag.from_pretrained(
        torch.randn(10, 4),
        mode="sum",
    )
    opt = torch.optim.Adam([{"params": emb.parameters(), "lr": 1e-4}])
    """
    got = found("GT135", text)
    assert [f.line for f in got] == [4]
    fix = got[0].fix
    assert fix is not None and fix.safe is False
    fixed = apply_edits(textwrap.dedent(text).lstrip("\n"), list(fix.edits))
    assert 'mode="sum", freeze=False,\n)' in fixed
    assert found("GT135", fixed) == []
