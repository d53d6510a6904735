"""Emptying what a probe wrote, even what it tried to keep: directories it made unreadable (`chmod 000`) are
opened up first; mount points (the read-only binds under $HOME) and the paths leading to them are left alone."""

from __future__ import annotations

import os
import shutil
import stat


def mount_points() -> set[str]:
    points = set()
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 4:
                    points.add(fields[4].replace("\\040", " "))
    except OSError:
        pass
    return points


def _protected(points: set[str]) -> set[str]:
    """Mount points and every directory above them."""
    out = set()
    for p in points:
        while p not in out and p not in ("", "/"):
            out.add(p)
            p = os.path.dirname(p)
    return out


def _unlock(top: str, protected: set[str]) -> None:
    """Make every directory under `top` listable and writable by its owner (a probe's `chmod 000`)."""
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            os.chmod(d, 0o700)
        except OSError:
            continue
        try:
            with os.scandir(d) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False) and e.path not in protected:
                        stack.append(e.path)
        except OSError:
            pass


def remove_tree(path: str, protected: set[str] | None = None, attempts: int = 4) -> bool:
    """Delete `path` and everything under it; True when it is gone."""
    protected = protected or set()
    for _ in range(attempts):
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        if not stat.S_ISDIR(info.st_mode):
            try:
                os.unlink(path)
            except OSError:
                pass
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return True
        _unlock(path, protected)
    return not os.path.lexists(path)


def empty(directory: str, keep: frozenset = frozenset(), only_new_since: set[str] | None = None) -> list[str]:
    """Delete the entries of `directory` (but `keep`, mount points, and the directories leading to mount points,
    which are emptied around them); with `only_new_since`, only the entries that were not there before.
    Returns what could not be deleted."""
    points = mount_points()
    protected = _protected(points)
    left: list[str] = []
    todo = [directory]
    while todo:
        current = todo.pop()
        try:
            names = os.listdir(current)
        except OSError:
            continue
        for name in names:
            path = os.path.join(current, name)
            if current == directory and (name in keep or (only_new_since is not None and name in only_new_since)):
                continue
            if path in points:
                continue
            if path in protected:
                todo.append(path)
            elif not remove_tree(path, protected):
                left.append(path)
    return left


def snapshot(directory: str) -> set[str]:
    try:
        return set(os.listdir(directory))
    except OSError:
        return set()
