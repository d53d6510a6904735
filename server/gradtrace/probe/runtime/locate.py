"""Where in the user's code something happened: their frames, their lines, their variable names."""

from __future__ import annotations

import os
import sys
import weakref
from dataclasses import dataclass


@dataclass(frozen=True)
class Site:
    """A line of the user's code, with the text shown for it (`with torch.no_grad():`)."""

    path: str | None
    line: int
    text: str = ""

    def loc(self) -> dict | None:
        return loc(self.path, self.line)


@dataclass(slots=True)
class Placed:
    """An object seen at a line of the user's code (a parameter's definition, a `requires_grad = False`)."""

    ref: weakref.ref
    path: str | None
    line: int

    def alive_is(self, obj) -> bool:
        return self.ref() is obj


def loc(path, line) -> dict | None:
    """The JSON location `{"path", "line"}`, or None when either is missing."""
    return {"path": path, "line": line} if path and line else None


RUNTIME = os.path.dirname(os.path.abspath(__file__))


def is_user_file(filename: str, roots: tuple[str, ...]) -> bool:
    if not filename or filename.startswith("<"):
        return False
    filename = os.path.abspath(filename)
    if filename.startswith(RUNTIME + os.sep):  # the probe's own code, wherever the user's project is
        return False
    if any(part in filename for part in ("site-packages", "dist-packages", f"{os.sep}lib{os.sep}python")):
        return False
    return any(filename == r or filename.startswith(r + os.sep) for r in roots)


class Locator:
    """Finds the innermost frame in the user's code by walking frames by hand (no inspect.stack)."""

    def __init__(self, script: str):
        self.roots = (os.path.dirname(script),)
        self.script = script
        self.cache: dict = {}

    def is_user(self, code) -> bool:
        u = self.cache.get(code)
        if u is None:
            u = self.cache[code] = is_user_file(code.co_filename, self.roots)
        return u

    def is_user_path(self, filename: str) -> bool:
        return is_user_file(filename, self.roots)

    def where(self, depth: int = 2) -> tuple[str | None, int]:
        try:
            f = sys._getframe(depth)
        except ValueError:
            return None, 0
        while f is not None:
            if self.is_user(f.f_code):
                return f.f_code.co_filename, f.f_lineno
            f = f.f_back
        return None, 0

    def where_built(self, obj, depth: int = 2) -> tuple[str | None, int]:
        """Where the user's code constructs `obj`: the first user frame that is not one of its own
        constructors (a subclass's `__init__` calling `super().__init__`)."""
        try:
            f = sys._getframe(depth)
        except ValueError:
            return None, 0
        while f is not None:
            if self.is_user(f.f_code) and not (f.f_code.co_name == "__init__" and f.f_locals.get("self") is obj):
                return f.f_code.co_filename, f.f_lineno
            f = f.f_back
        return None, 0

    def site(self, depth: int = 2, fallback: str = "") -> Site:
        path, line = self.where(depth + 1)
        return Site(path, line, site_text(path, line, fallback))

    def user_frames(self, depth: int = 2) -> list:
        frames = []
        f = sys._getframe(depth)
        while f is not None:
            if self.is_user(f.f_code):
                frames.append(f)
            f = f.f_back
        return frames

    def exc_location(self, exc: BaseException) -> tuple[str | None, int | None]:
        """The innermost line of the user's code in the exception's traceback."""
        tb = exc.__traceback__
        where = (None, None)
        while tb is not None:
            if self.is_user(tb.tb_frame.f_code):
                where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
            tb = tb.tb_next
        return where


def site_text(path, line, fallback) -> str:
    """The source text of a line (comment dropped, at most 80 characters), or `fallback`."""
    if path and line:
        try:
            import linecache

            text = linecache.getline(path, line).split("  #")[0].strip()
            if text:
                return text if len(text) <= 80 else text[:77] + "..."
        except Exception:  # noqa: BLE001
            pass
    return fallback


def names_in_frames(frames, objs) -> dict[int, str]:
    """A variable name for each object of `objs` found in the frames' locals (`x`, or `xs[2]` in a list)."""
    want = {id(o) for o in objs}
    found: dict[int, str] = {}
    for f in frames:
        for var, val in f.f_locals.items():
            if id(val) in want and id(val) not in found:
                found[id(val)] = var
            elif isinstance(val, (list, tuple)):
                for i, v in enumerate(val[:256]):
                    if id(v) in want and id(v) not in found:
                        found[id(v)] = f"{var}[{i}]"
    return found
