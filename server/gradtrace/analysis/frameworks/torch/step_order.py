"""The order a training step runs in: what an optimizer's `step()` changes, what a `zero_grad()` clears, and a
step that finds the gradients it needs already cleared."""

from __future__ import annotations

import ast
import bisect

from gradtrace.analysis.core.values import Value, is_symbolic, overlaps
from gradtrace.analysis.frameworks.torch.events import GradsCleared, Optimizer, Sink, Step


def cleared_before_step(record: list, run_starts: list) -> list:
    """(zero_grad event, step event) where the last thing before an optimizer's step that touches the gradients
    of what it holds is a `zero_grad()` setting them to None, and a `backward()` does reach them somewhere in
    the same run: the step finds no gradient and changes nothing."""
    found = []
    starts = sorted(run_starts)
    for index, step in enumerate(record):
        if not isinstance(step, Step):
            continue
        changed = stepped(step.optimizer)
        if not changed:
            continue
        start = starts[bisect.bisect_right(starts, index) - 1] if starts and starts[0] <= index else 0
        end = starts[bisect.bisect_right(starts, index)] if bisect.bisect_right(starts, index) < len(starts) \
            else len(record)
        sinks_before = [e for e in record[start:index] if isinstance(e, Sink) and e.kind != "output"]
        sinks_after = [e for e in record[index + 1:end] if isinstance(e, Sink) and e.kind != "output"]
        own = sinks_before[-1] if sinks_before else (sinks_after[0] if sinks_after else None)
        if own is None or not touches(own.value.srcs, changed):
            # no backward we recognise reaches them (`accelerator.backward(loss)`), or the loss this step follows
            # is another model's (an optimizer built over the wrong model: GT118's finding, not this one)
            continue
        for event in reversed(record[start:index]):
            if getattr(event, "arms", None) and step.arms and step.exclusive_with(event):
                continue
            if isinstance(event, Sink) and event.kind != "output" and touches(event.value.srcs, changed):
                break
            if isinstance(event, GradsCleared) and touches(cleared_sources(event.target), changed):
                if event.to_none:
                    found.append((event, step))
                break
    return found


def to_none(node: ast.Call) -> bool:
    """`zero_grad()` sets the gradients to None unless told `set_to_none=False`."""
    flag = next((k.value for k in node.keywords if k.arg == "set_to_none"), None)
    if flag is None and node.args:
        flag = node.args[0]
    return flag is None or not (isinstance(flag, ast.Constant) and flag.value is False)


def cleared_sources(target: Value) -> frozenset:
    """The sources whose gradients a `zero_grad()` on this optimizer or module clears."""
    return stepped(target) if target.kind == "optimizer" else target.srcs


def touches(a: frozenset, b: frozenset) -> bool:
    return any(overlaps(x, y) for x in a for y in b)


def stepped(optimizer: Value) -> frozenset:
    """The sources an optimizer's step changes."""
    return optimizer.ref.coverage.srcs if isinstance(optimizer.ref, Optimizer) else optimizer.srcs


def symbolic_optimizer(optimizer: Value) -> bool:
    """An optimizer a helper was given (its sources are the helper's argument, not yet the caller's values)."""
    return bool(optimizer.srcs) and all(is_symbolic(s) for s in optimizer.srcs)
