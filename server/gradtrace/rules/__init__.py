"""The rule registry: every module in this package that defines a `Rule` subclass with a code."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from gradtrace.rules.base import Rule


@cache
def all_rules() -> tuple[type[Rule], ...]:
    found: dict[str, type[Rule]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Rule) and obj is not Rule and getattr(obj, "code", None):
                if obj.code in found and found[obj.code] is not obj:
                    raise RuntimeError(f"two rules claim {obj.code}: {found[obj.code].__name__}, {obj.__name__}")
                found[obj.code] = obj
    return tuple(found[c] for c in sorted(found))


def get_rule(code: str) -> type[Rule] | None:
    code = code.upper()
    for rule in all_rules():
        if rule.code == code:
            return rule
    return None
