from gradtrace.analysis.core.values import expr_text
from gradtrace.rules.base import Invalid, Rule, Truth


class GradsClearedBeforeStep(Rule):
    code = "GT142"
    name = "grads-cleared-before-step"
    summary = "`zero_grad()` runs between `backward()` and `step()`: the step finds no gradient and nothing trains."
    severity = "error"
    docs = """
    ## What it does
    Follows the order in which the program runs `backward()`, `zero_grad()` and each optimizer's
    `step()`, through helper functions and loops, and finds a step whose optimizer's gradients were
    last touched by a `zero_grad()` (of the optimizer or of a model holding those parameters), although a
    `backward()` that reaches them runs elsewhere in the loop: `loss.backward(); opt.zero_grad();
    opt.step()`, or `opt.zero_grad(); opt.step(); loss.backward()` in a training loop.

    ## Why is this bad?
    `zero_grad()` sets every gradient to `None` (the default since PyTorch 2.0), and an optimizer skips
    parameters whose gradient is `None`: the step changes nothing, every step of the run. The loss is
    computed and logged as usual, so the only symptom is a model that never learns.

    ## Example
    ```python
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
    ```

    ## Use instead
    ```python
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    ```

    ## Fix safety
    No automatic fix: move `zero_grad()` before the `backward()` (or after the `step()`).
    """
    valid = (
        """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(3):
            optimizer.zero_grad()
            loss = model(torch.randn(8, 4)).pow(2).mean()
            loss.backward()
            optimizer.step()
        """,
        """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(8):
            loss = model(torch.randn(8, 4)).pow(2).mean() / 4
            loss.backward()
            if (step + 1) % 4 == 0:
                optimizer.step()
                optimizer.zero_grad()
        """,
        """
        import torch
        import torch.nn as nn

        generator = nn.Linear(4, 2)
        critic = nn.Linear(2, 1)
        g_opt = torch.optim.SGD(generator.parameters(), lr=0.1)
        c_opt = torch.optim.SGD(generator.parameters(), lr=0.1)  # over the wrong model: GT118's finding
        for step in range(3):
            c_opt.zero_grad()
            c_loss = critic(generator(torch.randn(8, 4)).detach()).mean()
            c_loss.backward()
            c_opt.step()
            g_opt.zero_grad()
            g_loss = -critic(generator(torch.randn(8, 4))).mean()
            g_loss.backward()
            g_opt.step()
        """,
    )
    invalid = (
        Invalid(
            """
            import torch
            import torch.nn as nn

            model = nn.Linear(4, 1)
            before = model.weight.detach().clone()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            for step in range(3):
                loss = model(torch.randn(8, 4)).pow(2).mean()
                loss.backward()
                optimizer.zero_grad()  # expect: GT142
                optimizer.step()
            """,
            truth=Truth(grads={"model.weight": "none", "torch.equal(model.weight, before)": "true"}),
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn


            def train(model, batches, optimizer):
                for x, y in batches:
                    model.zero_grad()  # expect: GT142
                    optimizer.step()
                    loss = nn.functional.mse_loss(model(x), y)
                    loss.backward()


            model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
            before = model[0].weight.detach().clone()
            optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
            train(model, [(torch.randn(8, 4), torch.randn(8, 1))] * 3, optimizer)
            """,
            truth=Truth(grads={"torch.equal(model[0].weight, before)": "true"}),
        ),
    )

    def check(self, ctx):
        for cleared, step in ctx.torch.flow.cleared_before_step:
            if cleared.module.path != ctx.path:
                continue
            call = expr_text(cleared.node) or "zero_grad()"
            stepped = expr_text(step.node) or "step()"
            line = step.module.source.span(step.node).line
            ctx.report(cleared.node,
                       f"`{call}` clears the gradients `{stepped}` on line {line} needs: the step changes nothing.",
                       related=[ctx.related(step.node, "the step that finds no gradient", source=step.module.source)])
        return ()
