"""One real model file, whole process: `gradtrace check FILE` against `ruff check --select ALL FILE`.

    .venv/bin/python bench/file_bench.py                    # the files below, 7 paired runs each
    .venv/bin/python bench/file_bench.py --runs 11 --downloads DIR

The files come from real distributions fetched at run time with `pip download` (never committed) and from the
installed torch; each is checked where it lives, inside its package, so what it imports from the package is
analysed too. Two ways a user meets it:
- cold: neither tool may use its cache (`--no-cache` for both): the file is new or was just edited;
- cached: both keep their own result cache and the file has not changed since the last run (a pre-commit
  hook or CI re-run over the same tree).
Runs alternate (gradtrace, ruff, gradtrace, ruff ...) and each figure is the median over pairs of the ratio
taken pair by pair, so that a machine whose speed drifts does not move it. Beside it: the median wall time of
each tool, and `ast.parse` of the file in this process.

Targets (the scale issue, 2-core machine): cold <= 4x ruff on every file, <= 3x on diffusers' modeling_utils.py.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from real_packages import fetch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# (distribution, path inside it) of each file measured; "torch" is the installed package
FILES = [
    ("diffusers", "src/diffusers/models/modeling_utils.py"),
    ("diffusers", "src/diffusers/models/unets/unet_2d_condition.py"),
    ("diffusers", "src/diffusers/models/attention_processor.py"),
    ("timm", "timm/models/vision_transformer.py"),
    ("timm", "timm/models/resnet.py"),
    ("transformers", "transformers/models/gpt2/modeling_gpt2.py"),
    ("torch", "nn/modules/module.py"),
    ("torch", "nn/modules/conv.py"),
]


def tool(name: str) -> str:
    for candidate in (ROOT / ".venv" / "bin" / name, Path(sys.executable).parent / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        sys.exit(f"{name} not found: run the README's set-up first")
    return found


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return time.perf_counter() - start


def paired(a: list[str], b: list[str], runs: int, env: dict) -> tuple[float, float, float]:
    """(median ratio a/b over pairs, median a seconds, median b seconds), after one unmeasured run of each."""
    timed(a, env)
    timed(b, env)
    ratios, times_a, times_b = [], [], []
    for _ in range(runs):
        ta = timed(a, env)
        tb = timed(b, env)
        ratios.append(ta / tb)
        times_a.append(ta)
        times_b.append(tb)
    return statistics.median(ratios), statistics.median(times_a), statistics.median(times_b)


def parse_ms(path: Path) -> float:
    text = path.read_text(encoding="utf-8")
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        ast.parse(text)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def locate(distribution: str, inner: str, downloads: Path) -> Path | None:
    if distribution == "torch":
        try:
            import torch
        except ImportError:
            return None
        return Path(torch.__file__).parent / inner
    unpacked = fetch(distribution, downloads)
    return unpacked / inner if unpacked is not None else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--downloads", type=Path, help="keep the downloads here between runs")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="measure only the files whose path holds TEXT (repeatable)")
    args = parser.parse_args()
    downloads = args.downloads or Path(tempfile.mkdtemp(prefix="gradtrace-file-bench-"))
    downloads.mkdir(parents=True, exist_ok=True)
    gradtrace, ruff = tool("gradtrace"), tool("ruff")
    caches = Path(tempfile.mkdtemp(prefix="gradtrace-file-bench-caches-"))
    env = dict(os.environ, GRADTRACE_CACHE_DIR=str(caches / "gradtrace"), RUFF_CACHE_DIR=str(caches / "ruff"))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.runs} paired runs per figure")
    print(f"{'file':52} {'lines':>6} {'parse':>7} | {'cold: gradtrace':>15} {'ruff':>7} {'ratio':>6} | "
          f"{'cached: gradtrace':>17} {'ruff':>7} {'ratio':>6}")
    for distribution, inner in FILES:
        if args.only and not any(text in inner for text in args.only):
            continue
        path = locate(distribution, inner, downloads)
        if path is None or not path.exists():
            print(f"{distribution}/{inner}: not available, skipped")
            continue
        lines = path.read_text(encoding="utf-8").count("\n")
        cold = paired([gradtrace, "check", "--no-cache", str(path)],
                      [ruff, "check", "--select", "ALL", "--no-cache", "--exit-zero", str(path)], args.runs, env)
        cached = paired([gradtrace, "check", str(path)],
                        [ruff, "check", "--select", "ALL", "--exit-zero", str(path)], args.runs, env)
        label = f"{distribution}/{inner}"[-52:]
        print(f"{label:52} {lines:6d} {parse_ms(path):5.1f}ms | {cold[1] * 1000:13.0f}ms {cold[2] * 1000:5.0f}ms "
              f"{cold[0]:5.1f}x | {cached[1] * 1000:15.0f}ms {cached[2] * 1000:5.0f}ms {cached[0]:5.1f}x")
    shutil.rmtree(caches, ignore_errors=True)
    print("command: .venv/bin/python bench/file_bench.py" + (f" --runs {args.runs}" if args.runs != 7 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
