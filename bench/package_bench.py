"""A real package, whole: gradtrace over diffusers' `src/diffusers/models` (~120 kLOC of model files that import
each other), fetched at run time with `pip download` (never committed).

    .venv/bin/python bench/package_bench.py                       # -j 2, ruff best of 3, 40 single files
    .venv/bin/python bench/package_bench.py --jobs 2 --repeat 3 --files 40 --downloads DIR

From one run, each figure beside its floor:
- the whole tree: `gradtrace check -j N --no-cache --format json` (wall time, and CPU time of the process and
  its workers), `ruff check --select ALL --no-cache` on the same tree (best of `--repeat`), and `ast.parse` of
  every file in one process; the ratios to ruff; how many files end with GT002 (partly analysed);
- `--files` files spread evenly over the tree, each checked by its own `gradtrace check` process (whole-process
  time, as a user running it on one file sees it), slowest first.

Targets (the scale issue, on a 2-core machine): whole tree <= 15x ruff, GT002 on <= 1 % of the files, the
slowest single file <= 2 s.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from real_packages import fetch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TREE = "src/diffusers/models"


def gradtrace_command() -> list[str]:
    venv = ROOT / ".venv" / "bin" / "gradtrace"
    return [str(venv)] if venv.exists() else [sys.executable, "-m", "gradtrace"]


def timed(command: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the command and its children, the finished process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc


def parse_floor(files: list[Path]) -> float:
    start = time.process_time()
    for path in files:
        try:
            ast.parse(path.read_text(encoding="utf-8"), str(path))
        except (SyntaxError, UnicodeDecodeError):
            pass
    return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="ruff runs (the best is kept)")
    parser.add_argument("--files", type=int, default=40, help="single files timed one process each")
    parser.add_argument("--downloads", type=Path, help="keep the download here between runs")
    args = parser.parse_args()

    downloads = args.downloads or Path(tempfile.mkdtemp(prefix="gradtrace-package-bench-"))
    downloads.mkdir(parents=True, exist_ok=True)
    print(f"gradtrace on a real package: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print("command: python bench/package_bench.py " + " ".join(sys.argv[1:]))
    unpacked = fetch("diffusers", downloads)
    if unpacked is None or not (unpacked / TREE).is_dir():
        print("diffusers could not be fetched (no network?): nothing measured")
        return 0
    files = sorted((unpacked / TREE).rglob("*.py"))
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in files)
    print(f"tree: {unpacked.name}/{TREE}: {len(files)} files, {lines:,} lines\n")

    wall, cpu, proc = timed([*gradtrace_command(), "check", "-j", str(args.jobs), "--no-cache", "--format", "json",
                             TREE], unpacked)
    try:
        findings = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        print(f"gradtrace gave no JSON (exit {proc.returncode}): {proc.stderr[-500:]}")
        return 1
    partly = {f["path"] for f in findings if f["code"] == "GT002"}
    ruff = shutil.which("ruff", path=str(ROOT / ".venv" / "bin")) or shutil.which("ruff")
    ruff_best = None
    for _ in range(args.repeat if ruff else 0):
        ruff_wall, ruff_cpu, _ = timed([ruff, "check", "--select", "ALL", "--no-cache", "-q", "--exit-zero", TREE],
                                       unpacked)
        if ruff_best is None or ruff_wall < ruff_best[0]:
            ruff_best = (ruff_wall, ruff_cpu)
    floor = parse_floor(files)

    print(f"whole tree, gradtrace check -j {args.jobs}: {wall:.2f} s wall, {cpu:.2f} s CPU; "
          f"{len(findings)} findings; GT002 on {len(partly)} of {len(files)} files ({100 * len(partly) / len(files):.1f} %)")
    if ruff_best:
        print(f"whole tree, ruff check --select ALL (best of {args.repeat}): {ruff_best[0]:.2f} s wall, "
              f"{ruff_best[1]:.2f} s CPU -> gradtrace/ruff {wall / ruff_best[0]:.1f}x wall, "
              f"{cpu / max(ruff_best[1], 1e-9):.1f}x CPU (target <= 15x)")
    else:
        print("ruff is not installed: no ruff floor")
    print(f"ast.parse of every file, one process: {floor:.2f} s CPU -> gradtrace/ast.parse {cpu / floor:.1f}x CPU")

    count = min(args.files, len(files))
    picked = [files[round(i * (len(files) - 1) / max(count - 1, 1))] for i in range(count)]
    singles = []
    for path in picked:
        one_wall, one_cpu, _ = timed([*gradtrace_command(), "check", "--no-cache", "--format", "json",
                                      str(path.relative_to(unpacked))], unpacked)
        singles.append((one_wall, one_cpu, path))
    singles.sort(key=lambda s: -s[0])
    print(f"\n{count} files, one `gradtrace check` process each (whole process), slowest first:")
    for one_wall, one_cpu, path in singles[:5]:
        print(f"  {one_wall:6.2f} s wall {one_cpu:6.2f} s CPU  {path.relative_to(unpacked)} "
              f"({len(path.read_text(encoding='utf-8').splitlines())} lines)")
    print(f"slowest single file: {singles[0][0]:.2f} s (target <= 2 s); median "
          f"{sorted(s[0] for s in singles)[count // 2]:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
