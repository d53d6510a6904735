"""The rule registry: every module in this package that defines a `Rule` subclass with a code.

Rule modules are named after their code (`gt105_detach_on_path.py`); the hundreds digit says the
framework (0 any, 1 PyTorch, 2 TensorFlow, 3 JAX, 9 probe), so `rules_for` imports only what a file needs.
"""

from __future__ import annotations

import importlib
import os
from functools import cache

from gradtrace.rules.base import Rule

FAMILY_FRAMEWORK = {"0": "any", "1": "torch", "2": "tensorflow", "3": "jax", "9": "probe"}


@cache
def _module_names() -> list[str]:
    """The rule modules of this package (a listing of its directory: `pkgutil` costs start-up time)."""
    names = {entry[:-3] for directory in __path__ for entry in os.listdir(directory) if entry.endswith(".py")}
    return sorted(n for n in names if n != "base" and not n.startswith("_") and n.isidentifier())


def _load(names: list[str]) -> tuple[type[Rule], ...]:
    found: dict[str, type[Rule]] = {}
    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Rule) and obj is not Rule and getattr(obj, "code", None):
                if obj.code in found and found[obj.code] is not obj:
                    raise RuntimeError(f"two rules claim {obj.code}: {found[obj.code].__name__}, {obj.__name__}")
                found[obj.code] = obj
    return tuple(found[c] for c in sorted(found))


@cache
def all_rules() -> tuple[type[Rule], ...]:
    return _load(_module_names())


@cache
def rules_for(frameworks: frozenset[str]) -> tuple[type[Rule], ...]:
    """The rules that can fire on a file mentioning `frameworks` (imports only those rule modules)."""
    wanted = {"any"} | set(frameworks)
    names = [n for n in _module_names()
             if not (n.startswith("gt") and n[2:3] in FAMILY_FRAMEWORK) or FAMILY_FRAMEWORK[n[2:3]] in wanted]
    return tuple(r for r in _load(names) if r.framework in wanted)


def get_rule(code: str) -> type[Rule] | None:
    code = code.upper()
    for rule in all_rules():
        if rule.code == code:
            return rule
    return None
