"""The one way gradtrace reads a user's file: regular files only, size bounded, never blocking.

A path in a project can name anything: a FIFO (reading it blocks forever), a device (`/dev/zero` never ends),
a symlink to either, a directory, or a file of gigabytes. Every read of a file that gradtrace did not write
itself goes through `read_bytes`, which opens without following into a block (`O_NONBLOCK`), checks with
`fstat` on the opened descriptor (no race between the check and the read) that it is a regular file, and
refuses more than `limit` bytes.
"""

from __future__ import annotations

import os
import stat

DEFAULT_LIMIT = 20 * 1024 * 1024


class UnreadableFile(OSError):
    """The file cannot be read; `reason` says why in a short sentence fragment ("not a regular file")."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_bytes(path: str, limit: int = DEFAULT_LIMIT) -> bytes:
    """The bytes of the regular file at `path` (symlinks followed), or `UnreadableFile`."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableFile(path, f"cannot open it ({exc.strerror or exc})") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(path, f"not a regular file ({_kind(info.st_mode)})")
        if info.st_size > limit:
            raise UnreadableFile(path, f"{_megabytes(info.st_size)} MB, over the {_megabytes(limit)} MB limit")
        chunks: list[bytes] = []
        total = 0
        while True:  # a file growing while we read it is still bounded
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise UnreadableFile(path, f"over the {_megabytes(limit)} MB limit")
        return b"".join(chunks)
    except OSError as exc:
        if isinstance(exc, UnreadableFile):
            raise
        raise UnreadableFile(path, f"cannot read it ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)


def read_text(path: str, limit: int = DEFAULT_LIMIT, errors: str = "strict") -> str:
    """The UTF-8 text of a regular file (a BOM is dropped); `UnicodeDecodeError` when not UTF-8."""
    return read_bytes(path, limit).decode("utf-8-sig", errors=errors)


def is_regular_file(path: str) -> bool:
    """True for a regular file (after symlinks); never blocks, never raises."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def _megabytes(size: int) -> int:
    return max(1, size // (1024 * 1024))
