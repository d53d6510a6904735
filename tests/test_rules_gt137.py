"""Look-alikes GT137 must stay quiet on, and shapes beyond their own examples they must catch."""

from __future__ import annotations

import textwrap

import pytest
from gradtrace.engine import check_source


def found(code: str, text: str) -> list:
    source = textwrap.dedent(text).lstrip("\n")
    return [f for f in check_source(source, "example.py").findings if f.code == code]


def lines(code: str, text: str) -> list[int]:
    return sorted(f.line for f in found(code, text))


QUIET = {
    "GT137": [
        """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        model, opt = accelerator.prepare(model, opt)
        opt.zero_grad()
        accelerator.backward(model(torch.randn(2, 4)).sum())
        """,
        """
        import torch
        import torch.nn as nn


        def train(model, optimizer, batches):
            for x in batches:
                optimizer.zero_grad()
                model(x).sum().backward()
                optimizer.step()


        model = nn.Linear(4, 1)
        optimizer = torch.optim.Adam(model.parameters())
        optimizer.zero_grad()
        model(torch.randn(2, 4)).sum().backward()
        train(model, optimizer, [torch.randn(2, 4)])
        """,
        """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 1)
        opt = torch.optim.LBFGS(model.parameters())
        x = torch.randn(8, 4)


        def closure():
            opt.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            return loss


        opt.step(closure)
        """,
        """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for i in range(8):
            loss = model(torch.randn(2, 4)).sum() / 4
            loss.backward()
            if (i + 1) % 4 == 0:
                opt.step()
                opt.zero_grad()
        """,
        """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        opt = DistributedOptimizer(opt)
        opt.zero_grad()
        model(torch.randn(2, 4)).sum().backward()
        """,
        """
        import torch
        import torch.nn as nn


        class Trainer:
            def __init__(self, model):
                self.model = model
                self.optimizer = torch.optim.Adam(model.parameters())

            def train_step(self, x):
                self.optimizer.zero_grad()
                self.model(x).sum().backward()
                self.after_backward()

            def reset(self):
                self.optimizer.zero_grad()


        class Fast(Trainer):
            def after_backward(self):
                getattr(self, "optimizer").step()
        """,
        """
        import torch
        import torch.nn as nn

        from .base import BaseTrainer


        class Trainer(BaseTrainer):
            def __init__(self, model):
                self.model = model
                self.optimizer = torch.optim.Adam(model.parameters())

            def train_step(self, x):
                self.optimizer.zero_grad()
                self.model(x).sum().backward()
                self.on_after_backward()
        """,
        """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.StepLR(opt, 1)
        lrs = []
        for _ in range(5):
            opt.zero_grad()
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        """,
    ],
}

FLAGGED = {
    "GT137": [
        (
            """
            import torch
            import torch.nn as nn


            class Trainer:
                def __init__(self, model):
                    self.model = model
                    self.opt = torch.optim.Adam(model.parameters())
                    self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=1)

                def train_step(self, x):
                    self.opt.zero_grad()
                    loss = self.model(x).sum()
                    loss.backward()
                    self.sched.step()
            """,
            [15],
        ),
        (
            """
            import torch
            import torch.nn as nn


            def make_optimizer(model):
                return torch.optim.SGD(model.parameters(), lr=0.1)


            model = nn.Linear(4, 1)
            opt = make_optimizer(model)
            for _ in range(3):
                opt.zero_grad()
                model(torch.randn(2, 4)).sum().backward()
            """,
            [6],
        ),
    ],
}


@pytest.mark.parametrize(("code", "text"), [(c, t) for c, ts in QUIET.items() for t in ts])
def test_quiet_on_look_alikes(code, text):
    assert found(code, text) == []


@pytest.mark.parametrize(("code", "text", "expected"), [(c, t, e) for c, cases in FLAGGED.items() for t, e in cases])
def test_flags_other_shapes(code, text, expected):
    assert lines(code, text) == expected
