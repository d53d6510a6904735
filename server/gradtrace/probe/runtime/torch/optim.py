"""The optimizers a script builds and the steps they take.

The book holds each optimizer (a strong reference): an optimizer built inside `main()` or a trainer's
`__init__` is still there when the probe reports, however the script's frames have unwound by then.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OptimizerSeen:
    optimizer: object
    path: str | None
    line: int
    cls: str

    def params(self) -> list:
        try:
            return [p for g in self.optimizer.param_groups for p in g["params"]]
        except Exception:  # noqa: BLE001 - a user's optimizer subclass may have anything there
            return []


@dataclass
class StepSeen:
    path: str | None
    line: int
    step: int  # the training step (backward count) it happened in
    optimizer: OptimizerSeen | None = None
    versions: dict = field(default_factory=dict)  # id(param) -> its version before this step


class OptimizerBook:
    def __init__(self):
        self.optimizers: list[OptimizerSeen] = []
        self.steps: list[StepSeen] = []

    def built(self, opt, path, line) -> None:
        self.optimizers.append(OptimizerSeen(opt, path, line, type(opt).__name__))

    def seen(self, opt) -> OptimizerSeen | None:
        return next((o for o in self.optimizers if o.optimizer is opt), None)

    def stepping(self, opt, path, line, step) -> None:
        """Before `opt.step()`: where, and the versions of the parameters it is about to change."""
        seen = self.seen(opt)
        versions = {id(p): p._version for p in seen.params()} if seen is not None else {}
        self.steps.append(StepSeen(path, line, step, seen, versions))

    def summary(self) -> tuple[set[int], list[dict]]:
        """(ids of every parameter some optimizer holds, one JSON entry per optimizer)."""
        held: set[int] = set()
        entries = []
        for seen in self.optimizers:
            ids = [id(p) for p in seen.params()]
            held.update(ids)
            entries.append({"class": seen.cls, "path": seen.path, "line": seen.line, "ids": ids})
        return held, entries

    def __bool__(self) -> bool:
        return bool(self.optimizers)
