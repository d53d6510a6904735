"""Running the user's file as `__main__` up to its training steps: the part every framework shares."""

from __future__ import annotations

import ast
import os
import re
import sys
import time
import types

from .locate import Locator, loc


def overall(statuses: list[str]) -> str:
    """A parameter's gradient over every step it was seen in: "ok" if it ever got one, else the worst seen."""
    for status in ("ok", "nonfinite", "zero"):
        if status in statuses:
            return status
    return "none"


class Stop(BaseException):  # noqa: N818 - unwinds the user's script; not an Exception on purpose
    pass


def detect_framework(source: str, parse=ast.parse) -> str | None:
    """The framework the script trains with (`parse`: a thread-safe `ast.parse` where several threads parse)."""
    try:
        tree = parse(source)
    except SyntaxError:  # still say which framework: the probe then reports the syntax error and its line
        found = re.findall(r"^\s*(?:import|from)\s+(torch|tensorflow|keras|jax|flax|optax)\b", source, re.M)
        order = {"torch": 0, "tensorflow": 1, "keras": 1, "jax": 2, "flax": 2, "optax": 2}
        best = min(found, key=order.get, default=None)
        return {"keras": "tensorflow", "flax": "jax", "optax": "jax"}.get(best, best) if best else None
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            mods.add(node.module.split(".")[0])
    if "torch" in mods:
        return "torch"
    if "tensorflow" in mods or "keras" in mods:
        return "tensorflow"
    if mods & {"jax", "flax", "optax"}:
        return "jax"
    return None


def has_training_step(tree) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("backward", "gradient", "jacobian", "manual_backward"):
                return True
            if name == "grad" and isinstance(fn, ast.Attribute) and isinstance(fn.value, (ast.Attribute, ast.Name)):
                base = fn.value.attr if isinstance(fn.value, ast.Attribute) else fn.value.id
                if base == "autograd":
                    return True
    return False


def calls_any(tree, names) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in names
               for n in ast.walk(tree))


class ScriptProbe:
    """What every framework's probe has: the file, the request, the step budget and the run as `__main__`."""

    framework = "?"

    def __init__(self, path: str, source: str, req: dict):
        self.path = path
        self.source = source
        self.req = req
        self.loc = Locator(path)
        self.max_steps = int(req.get("max_steps") or 16)
        self.budget_factor = float(req.get("budget_factor") or 2.0)
        self.recording = False
        self.step = 0
        self.error: dict | None = None
        self.stop_reason = ""
        self.mode = "script"
        self.mode_reason = ""
        self.backward_sites: list[tuple[str | None, int]] = []
        self.first_backward_end: float | None = None
        self.t_start = time.perf_counter()
        self.notes: list[str] = []

    def stop_when_steps_spent(self, call: str) -> None:
        """After a differentiation step: stop the user's script at the step limit, or when later steps have used
        their time budget (a multiple of the time to the first step)."""
        now = time.perf_counter()
        if self.first_backward_end is None:
            self.first_backward_end = now
        plural = "s" if self.step > 1 else ""
        if self.step >= self.max_steps:
            self.stop_reason = f"stopped after {self.step} {call} call{plural} (the step limit)"
            raise Stop()
        if now - self.t_start > self.budget_factor * (self.first_backward_end - self.t_start) + 0.5:
            self.stop_reason = f"stopped after {self.step} {call} call{plural} (time budget for later steps used up)"
            raise Stop()

    def explain_script_error(self, exc: BaseException, path: str | None, line: int | None) -> None:
        """Framework probes add the cause of errors they recognise to `self.error`."""

    def run_script(self) -> str:
        """Run the file as `__main__`: "stopped" (a step ended it or it raised), "finished" or "no-backward"."""
        main = types.ModuleType("__main__")
        main.__file__ = self.path
        main.__builtins__ = __builtins__
        sys.modules["__main__"] = main
        sys.argv = [self.path]
        sys.path.insert(0, os.path.dirname(self.path))
        code = compile(self.source, self.path, "exec")
        self.recording = True
        try:
            exec(code, main.__dict__)
        except Stop:
            return "stopped"
        except SystemExit:
            pass
        except BaseException as exc:  # noqa: BLE001 - the user's code failed: say where
            self.recording = False
            path, line = self.loc.exc_location(exc)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.error = {"type": type(exc).__name__, "message": first, "path": path, "line": line}
            self.explain_script_error(exc, path, line)
            self.stop_reason = "the script raised before backward()" if not self.step else \
                f"the script raised after {self.step} backward() call(s)"
            return "stopped"
        finally:
            self.recording = False
        if self.step == 0:
            return "no-backward"
        self.stop_reason = f"the script finished after {self.step} gradient call(s)"
        return "finished"

    def backward_site_list(self) -> list:
        return [loc(p, ln) for p, ln in self.backward_sites[:32]]
