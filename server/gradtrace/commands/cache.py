"""A result cache for `gradtrace check`, keyed by file content, gradtrace version and settings."""

from __future__ import annotations

import json
import os

try:  # hashlib's own BLAKE2, without the OpenSSL start-up that importing hashlib costs every run (~4 ms)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b

from gradtrace import __version__
from gradtrace.findings import Finding
from gradtrace.guarded_files import read_bytes


def code_fingerprint() -> str:
    """Changes whenever gradtrace's own code changes (not only its version number)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = blake2b(digest_size=20)
    for directory, _, files in sorted(os.walk(package)):
        for name in sorted(files):
            if name.endswith(".py"):
                st = os.stat(os.path.join(directory, name))
                digest.update(f"{name}:{st.st_mtime_ns}:{st.st_size}".encode())
    return digest.hexdigest()[:12]


class ResultCache:
    def __init__(self, directory: str, salt: str):
        self.directory = directory
        self.salt = salt
        self.file = os.path.join(directory, f"results-{salt}.json")
        self.entries: dict[str, list[dict]] = {}
        self.dirty = False
        self._listings: dict[str, list[tuple[str, bytes]]] = {}
        try:
            with open(self.file, encoding="utf-8") as fh:
                self.entries = json.load(fh)
        except (OSError, ValueError):
            self.entries = {}

    @classmethod
    def for_root(cls, root: str, settings) -> ResultCache | None:
        directory = os.environ.get("GRADTRACE_CACHE_DIR") or os.path.join(root, ".gradtrace-cache")
        salt = blake2b(f"{__version__}|{code_fingerprint()}|{settings!r}".encode(), digest_size=20).hexdigest()[:12]
        return cls(directory, salt)

    def _key(self, path: str) -> str | None:
        """Content of the file, plus the versions of its neighbours (a model imported from next door)."""
        try:
            digest = blake2b(read_bytes(path), digest_size=20)  # a FIFO or a device is not a file to hash
            full = os.path.abspath(path)
            directory = os.path.dirname(full)
            listing = self._listings.get(directory)  # one scan per directory and run, not one per file
            if listing is None:
                listing = self._listings[directory] = [
                    (entry.path, f"{entry.name}:{st.st_mtime_ns}:{st.st_size}".encode())
                    for entry in sorted(os.scandir(directory), key=lambda e: e.name) if entry.name.endswith(".py")
                    for st in (entry.stat(),)]
            for entry_path, stamp in listing:
                if entry_path != full:
                    digest.update(stamp)
        except OSError:
            return None
        return f"{full}|{digest.hexdigest()}"

    def get(self, path: str) -> list[Finding] | None:
        key = self._key(path)
        items = self.entries.get(key) if key else None
        return None if items is None else [Finding.from_json(i) for i in items]

    def put(self, path: str, findings: list[Finding]) -> None:
        key = self._key(path)
        if key:
            self.entries[key] = [f.to_json() for f in findings]
            self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            os.makedirs(self.directory, exist_ok=True)
            with open(os.path.join(self.directory, ".gitignore"), "w") as fh:
                fh.write("*\n")
            tmp = self.file + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(self.entries, fh)
            os.replace(tmp, self.file)
        except OSError:
            pass  # a read-only tree still gets its findings
