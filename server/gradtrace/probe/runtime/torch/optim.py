"""The optimizers a script builds and the steps they take."""

from __future__ import annotations

import weakref
from dataclasses import dataclass


@dataclass
class OptimizerSeen:
    ref: weakref.ref
    path: str | None
    line: int
    cls: str


@dataclass
class StepSeen:
    path: str | None
    line: int
    step: int  # the training step (backward count) it happened in


class OptimizerBook:
    def __init__(self):
        self.optimizers: list[OptimizerSeen] = []
        self.steps: list[StepSeen] = []

    def built(self, opt, path, line) -> None:
        self.optimizers.append(OptimizerSeen(weakref.ref(opt), path, line, type(opt).__name__))

    def summary(self, names: dict[int, str]) -> tuple[set[int], list[dict]]:
        """(ids of every parameter some optimizer holds, one JSON entry per optimizer)."""
        held: set[int] = set()
        entries = []
        for seen in self.optimizers:
            opt = seen.ref()
            if opt is None:
                continue
            ids = [id(p) for g in opt.param_groups for p in g["params"]]
            held.update(ids)
            entries.append({"class": seen.cls, "path": seen.path, "line": seen.line, "ids": ids})
        return held, entries

    def __bool__(self) -> bool:
        return bool(self.optimizers)
