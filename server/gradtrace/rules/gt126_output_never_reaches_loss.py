from gradtrace.analysis.core.values import alive_in
from gradtrace.analysis.frameworks.torch import api
from gradtrace.rules.base import Invalid, Rule, Truth


class OutputNeverReachesLoss(Rule):
    code = "GT126"
    name = "layer-output-never-reaches-loss"
    summary = "A layer runs in `forward`, but its output never reaches the loss: its parameters get no gradient."
    docs = """
    ## What it does
    Follows a model that is trained in this file (built here, handed to an optimizer, its loss
    differentiated here) and finds registered layers and parameters that `forward` uses but whose
    results never reach any loss that `backward()` is called on — an auxiliary head whose output is
    returned and ignored, a branch whose result is dropped.

    ## Why is this bad?
    Parameters that do not take part in the loss get no gradient: `.grad` stays `None`, the optimizer
    never moves them, and `DistributedDataParallel` raises about unused parameters on the next step.

    ## Example
    ```python
    logits, aux = model(x)
    loss = criterion(logits, y)
    ```

    ## Use instead
    ```python
    logits, aux = model(x)
    loss = criterion(logits, y) + 0.4 * criterion(aux, y)
    ```

    ## Fix safety
    No automatic fix: add the missing loss term, or stop computing (and optimizing) the unused part.
    """
    valid = (
        """
        import torch
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Linear(4, 4)
                self.aux = nn.Linear(4, 2)
                self.out = nn.Linear(4, 2)

            def forward(self, x):
                h = self.body(x)
                return self.out(h), self.aux(h)


        model = Net()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        logits, aux = model(torch.randn(3, 4))
        loss = logits.sum() + 0.4 * aux.sum()
        loss.backward()
        """,
        """
        import torch
        import torch.nn as nn


        class SequenceWise(nn.Module):
            def __init__(self, module):
                super().__init__()
                self.module = module

            def forward(self, x):
                t, n = x.size(0), x.size(1)
                return self.module(x.view(t * n, -1)).view(t, n, -1)


        class Tagger(nn.Module):
            def __init__(self, hidden=8, classes=3):
                super().__init__()
                self.rnn = nn.GRU(4, hidden)
                head = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, classes))
                self.fc = nn.Sequential(SequenceWise(head))

            def forward(self, x):
                h, _ = self.rnn(x)
                return self.fc(h)


        model = Tagger()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        loss = model(torch.randn(5, 2, 4)).logsumexp(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
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
                    self.body = nn.Linear(4, 4)
                    self.aux = nn.Linear(4, 2)  # expect: GT126
                    self.out = nn.Linear(4, 2)

                def forward(self, x):
                    h = self.body(x)
                    return self.out(h), self.aux(h)


            model = Net()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            logits, aux = model(torch.randn(3, 4))
            loss = logits.sum()
            loss.backward()
            """,
            truth=Truth(grads={"model.aux.weight": "none"}),
        ),
    )

    def check(self, ctx):
        facts = ctx.torch
        flow = facts.flow
        sinks = [s for s in facts.training_sinks if s.module.path == ctx.path]
        if not sinks:
            return ()
        touched = set(facts.alive)
        for sink in facts.training_sinks:
            for c in sink.value.cuts:
                touched |= c.lost
        models = {s.split(".")[0] for s in facts.alive if flow.source_kind.get(s.split(".")[0]) == "module"}
        reported = set()
        for model_name in sorted(models):
            in_optimizer = any(o.known and model_name in o.coverage.srcs for o in flow.optimizers)
            if not in_optimizer:
                continue
            for source, (node, module) in sorted(flow.definitions.items(), key=lambda kv: kv[0]):
                if not source.startswith(model_name + ".") or source.count(".") != 1:
                    continue
                if alive_in(source, frozenset(touched)) or source in reported:
                    continue
                attr = source.split(".", 1)[1]
                info = next((c for c in module.classes.values() if attr in c.attrs and c.attrs[attr].stmt is node),
                            None)
                if info is None or info.dynamic:
                    continue
                fact = info.attrs[attr]
                if fact.kind not in ("module", "param") or (
                        fact.layer and fact.layer.split(".")[-1] in api.PARAMETERLESS_LAYERS):
                    continue
                child = module.resolve_class(fact.layer) if fact.layer and "." not in fact.layer else None
                if child is not None and not child.has_parameters():
                    continue  # buffers only (positional encodings, masks): nothing to train
                reported.add(source)
                where = node if module.path == ctx.path else sinks[0].node
                ctx.report(where, f"`{source}` runs in `forward`, but nothing it computes reaches the loss: it gets no gradient.",
                           related=[ctx.related(sinks[0].node, "the loss that leaves it out")])
        return ()
