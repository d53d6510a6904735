"""The messages between the launcher and the warm worker, and the bounds every number in them must respect.

Both sides use these: the launcher builds a `ProbeRequest` (refusing bad numbers with a message that names the
setting), the worker reads it back, and the launcher accepts an event only if `read_event` does: a JSON object
whose `event` is known, whose fields have the right types, and whose `id` is the request's. Anything else is
dropped, so nothing a probe writes can pass for an answer.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

MAX_TIMEOUT_S = 24 * 3600.0
MIN_MEMORY_MB = 64
MAX_MEMORY_MB = 1 << 22  # 4 TB
MAX_STEPS = 10_000
MODES = ("auto", "script", "module")
EVENTS = {"ready", "fatal", "started", "result"}
RESULT_LINE_MAX = 80 * 1024 * 1024  # one event line; a probe's result is at most 64 MB


def seconds(value, name: str = "timeout") -> float:
    """A finite, positive number of seconds (at most a day)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, not {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0 or value > MAX_TIMEOUT_S:
        raise ValueError(f"{name} must be a finite number of seconds above 0 and at most {MAX_TIMEOUT_S:g}, "
                         f"not {value!r}")
    return value


def whole(value, name: str, low: int, high: int) -> int:
    """An integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, not {value}")
    return value


def memory_mb(value) -> int:
    return whole(value, "memory_mb", MIN_MEMORY_MB, MAX_MEMORY_MB)


def max_steps(value) -> int:
    return whole(value, "max_steps", 1, MAX_STEPS)


@dataclass(frozen=True)
class ProbeRequest:
    """One probe, as the launcher asks it of the worker."""

    id: int
    path: str
    framework: str
    timeout: float
    memory_mb: int
    device: str = "cpu"
    mode: str = "auto"
    max_steps: int = 16
    max_procs: int = 256
    threads: int = 1

    def __post_init__(self):
        whole(self.id, "id", 1, 1 << 62)
        if not isinstance(self.path, str) or not self.path or "\0" in self.path:
            raise ValueError("path must be a file path")
        if self.framework not in ("torch", "tensorflow", "jax"):
            raise ValueError(f"unknown framework {self.framework!r}")
        seconds(self.timeout)
        memory_mb(self.memory_mb)
        if not isinstance(self.device, str) or not self.device or len(self.device) > 64:
            raise ValueError("device must be a device name such as cpu or cuda")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        max_steps(self.max_steps)
        whole(self.max_procs, "max_procs", 1, 1 << 16)
        whole(self.threads, "threads", 1, 1 << 12)

    def to_line(self) -> bytes:
        return (json.dumps(asdict(self)) + "\n").encode()

    @classmethod
    def from_json(cls, obj) -> ProbeRequest:
        if not isinstance(obj, dict):
            raise ValueError("a request is a JSON object")
        known = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        return cls(**known)


def read_event(line: bytes, expect_id: int | None) -> dict | None:
    """The event on one line from the worker, or None when it is not a well-formed event for `expect_id`."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or obj.get("event") not in EVENTS:
        return None
    event = obj["event"]
    if event in ("started", "result") and (expect_id is None or obj.get("id") != expect_id
                                           or isinstance(obj.get("id"), bool)):
        return None
    if event == "result" and not isinstance(obj.get("result"), dict):
        return None
    if event == "ready" and not isinstance(obj.get("layers", []), list):
        return None
    if event == "fatal" and not isinstance(obj.get("error", {}), dict):
        return None
    return obj
