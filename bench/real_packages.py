"""Real distributions for the benchmarks, fetched at run time with `pip download` (never committed)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path


def fetch(distribution: str, downloads: Path) -> Path | None:
    """The unpacked sdist (or wheel) of `distribution` under `downloads`; None when pip cannot get it."""
    for unpacked in sorted(downloads.glob(f"{distribution}-*")):
        if unpacked.is_dir():
            return unpacked
    prefer = ["--no-binary", ":all:"] if distribution == "diffusers" else ["--only-binary", ":all:"]
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *prefer, "-d",
                           str(downloads), distribution], capture_output=True, text=True, timeout=600)
    archives = sorted(downloads.glob(f"{distribution}-*.tar.gz")) + sorted(downloads.glob(f"{distribution}-*.whl"))
    if proc.returncode != 0 or not archives:
        print(f"  {distribution}: pip download failed ({(proc.stderr or proc.stdout).strip().splitlines()[-1:]})")
        return None
    archive = archives[0]
    if archive.suffix == ".whl":
        target = downloads / archive.name.removesuffix(".whl")
        with zipfile.ZipFile(archive) as z:
            z.extractall(target)
        return target
    with tarfile.open(archive) as t:
        t.extractall(downloads, filter="data")
    return downloads / archive.name.removesuffix(".tar.gz")
