"""Scale: `gradtrace check -j N` over a generated tree, cold vs warm cache; server RSS over many edits.

    .venv/bin/python bench/scale_bench.py                      # both parts, defaults below
    .venv/bin/python bench/scale_bench.py --files 2400 --jobs 2 --edits 5000
    .venv/bin/python bench/scale_bench.py --skip-server        # only the CLI part
    .venv/bin/python bench/scale_bench.py --skip-cli           # only the server's memory over 5,000 edits

Part 1 writes `--files` Python files (the fixtures under `fixtures/`, each copy made distinct) into
a temporary tree and runs `gradtrace check -j N --format json` on it: cold (empty cache), warm
(nothing changed), after touching one file, and cold again without the cache (`--no-cache`), all
with a frozen copy of gradtrace (the cache is keyed by gradtrace's own code as well). Floors
from the same run: `ast.parse` of every file in one process, and `ruff check --select ALL` when
ruff is installed. Target: warm >= 10x faster than cold.

Part 2 starts `gradtrace server` on stdio, opens `--open` documents (one of ~1,000 lines), then sends
`--edits` incremental didChange edits to the big one, across the file: half of them type a character
into a variable's name and delete it (code: analysed again), half type a comment and delete it
(mapped through, not analysed); it waits for the diagnostics every `--settle` edits, samples the
resident memory of the server and its analysis process(es), and counts from the server's debug log
which documents were analysed and how. Target: RSS flat (the last sample within ±10 % of the one after
warm-up), and only the edited document analysed.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import queue
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "server") + os.pathsep + os.environ.get("PYTHONPATH", "")}
GRADTRACE = [sys.executable, "-m", "gradtrace"]


def fixtures() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted((ROOT / "fixtures").rglob("*.py"))]


def make_tree(root: Path, count: int) -> list[Path]:
    """`count` distinct files in 50-file packages (each a fixture with its own header and names)."""
    texts = fixtures()
    paths = []
    for i in range(count):
        package = root / f"pkg_{i // 50:03d}"
        package.mkdir(parents=True, exist_ok=True)
        text = texts[i % len(texts)]
        body = f"# generated copy {i} of fixture {i % len(texts)}\n{text}\n\ndef helper_{i}(value):\n    return value * {i}\n"
        path = package / f"mod_{i:05d}.py"
        path.write_text(body, encoding="utf-8")
        paths.append(path)
    return paths


def timed(cmd: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, proc


def cli_part(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="gradtrace-scale-"))
    try:
        tree = work / "tree"
        paths = make_tree(tree, args.files)
        lines = sum(p.read_text(encoding="utf-8").count("\n") for p in paths)
        start = time.perf_counter()
        for p in paths:
            ast.parse(p.read_text(encoding="utf-8"))
        parse_floor = time.perf_counter() - start
        ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
        ruff_time = None
        if os.path.exists(ruff):
            ruff_time, _ = timed([ruff, "check", "--select", "ALL", "--no-cache", "--quiet", "--exit-zero", str(tree)],
                                 ENV)
        # a frozen copy of gradtrace: the cache is keyed by gradtrace's own code, which must not change mid-run
        shutil.copytree(ROOT / "server" / "gradtrace", work / "src" / "gradtrace",
                        ignore=shutil.ignore_patterns("__pycache__"))
        cache = work / "cache"
        env = {**ENV, "GRADTRACE_CACHE_DIR": str(cache), "PYTHONPATH": str(work / "src")}
        subprocess.run([*GRADTRACE, "rules"], capture_output=True, env=env)  # byte-compile the copy once
        check = [*GRADTRACE, "check", "-j", str(args.jobs), "--format", "json", str(tree)]
        runs: dict[str, list[float]] = {"cold": [], "warm": [], "one file touched": [], "no cache": []}
        reference = None
        for _ in range(args.repeat):
            shutil.rmtree(cache, ignore_errors=True)
            seconds, proc = timed(check, env)
            runs["cold"].append(seconds)
            assert proc.returncode in (0, 1), proc.stderr[-2000:]
            findings = json.loads(proc.stdout)
            reference = reference or findings
            assert findings == reference, "cold runs disagree"
            seconds, proc = timed(check, env)
            runs["warm"].append(seconds)
            assert json.loads(proc.stdout) == reference, "the warm run reports something else than the cold one"
            touched = paths[len(paths) // 2]
            touched.write_text(touched.read_text(encoding="utf-8") + "# touched\n", encoding="utf-8")
            seconds, proc = timed(check, env)
            runs["one file touched"].append(seconds)
            assert proc.returncode in (0, 1)
            touched.write_text(touched.read_text(encoding="utf-8").removesuffix("# touched\n"), encoding="utf-8")
            seconds, proc = timed([*GRADTRACE, "check", "--no-cache", "-j", str(args.jobs), "--format", "json",
                                   str(tree)], env)
            runs["no cache"].append(seconds)
        start_time, _ = timed([*GRADTRACE, "rules"], env)
        median = {k: statistics.median(v) for k, v in runs.items()}
        return {
            "files": len(paths), "lines": lines, "findings": len(reference or []), "jobs": args.jobs,
            "seconds": {k: round(v, 2) for k, v in median.items()},
            "all runs": {k: [round(x, 2) for x in v] for k, v in runs.items()},
            "warm speed-up": round(median["cold"] / median["warm"], 1),
            "floors": {"ast.parse of every file, one process": round(parse_floor, 2),
                       "ruff check --select ALL": round(ruff_time, 2) if ruff_time is not None else None,
                       "gradtrace start-up (gradtrace rules)": round(start_time, 2)},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- the server ----------------------------------------------------------------------------------


class Pipe:
    """A bare stdio LSP client: framed writes, a reader thread, server requests answered with null."""

    def __init__(self, cmd, env):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, bufsize=0)
        self.inbox: queue.Queue = queue.Queue()
        self.next_id = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        out = self.proc.stdout
        while True:
            header = b""
            while not header.endswith(b"\r\n\r\n"):
                ch = out.read(1)
                if not ch:
                    self.inbox.put(None)
                    return
                header += ch
            length = int(re.search(rb"Content-Length: *(\d+)", header).group(1))
            body = b""
            while len(body) < length:
                body += out.read(length - len(body))
            message = json.loads(body)
            if "method" in message and "id" in message:
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            self.inbox.put(message)

    def send(self, message: dict) -> None:
        data = json.dumps(message).encode()
        with self.lock:
            self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)

    def notify(self, method, params):
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method, params) -> int:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        return self.next_id

    def wait(self, predicate, timeout=120.0, on_message=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            if message is None:
                raise RuntimeError("the server exited")
            if on_message:
                on_message(message)
            if predicate(message):
                return message
        raise TimeoutError("no answer from the server")


NAME = re.compile(r"^(\s+)([a-z_][a-z0-9_]*) = ")  # a local variable assigned in a block: type into its name


def u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and its descendants (the analysis workers), in kB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo += [int(c) for c in fh.read().split()]
        except (OSError, StopIteration):
            continue
    return total


def server_part(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="gradtrace-rss-"))
    texts = fixtures()
    big = "".join(texts)
    while big.count("\n") < 1000:
        big += texts[len(big) % len(texts)]
    docs = {work / "big.py": big}
    for i in range(1, args.open):
        docs[work / f"other_{i}.py"] = texts[i % len(texts)]
    pipe = Pipe([*GRADTRACE, "server"], ENV)
    analysed: dict[str, int] = {}
    mapped: dict[str, int] = {}

    answered: set = set()

    def count(message):
        if "id" in message and "method" not in message:
            answered.add(message["id"])
        if message.get("method") == "window/logMessage":
            m = re.match(r"(\S+\.py) v\S+: \d+ findings in .*\((analysed|mapped)", message["params"]["message"])
            if m:
                tally = analysed if m.group(2) == "analysed" else mapped
                tally[m.group(1)] = tally.get(m.group(1), 0) + 1

    try:
        rid = pipe.request("initialize", {"processId": os.getpid(), "rootUri": work.as_uri(), "capabilities": {
            "textDocument": {"publishDiagnostics": {"versionSupport": True}}},
            "initializationOptions": {"logLevel": "debug"}})
        pipe.wait(lambda m: m.get("id") == rid, on_message=count)
        pipe.notify("initialized", {})
        uris = {}
        for path, text in docs.items():
            uris[path.name] = uri = path.as_uri()
            pipe.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                                  "text": text}})
        waiting = set(uris.values())

        def first_publish(m):
            if m.get("method") == "textDocument/publishDiagnostics":
                waiting.discard(m["params"]["uri"])
            return not waiting

        pipe.wait(first_publish, on_message=count)
        before_edits = dict(analysed)
        big_uri = uris["big.py"]
        lines = big.split("\n")
        names = [(n, m.end(2)) for n, line in enumerate(lines) if (m := NAME.match(line))]
        rng = random.Random(7)
        samples = [(0, tree_rss_kb(pipe.proc.pid))]
        start = time.perf_counter()
        hover_ids, typed = [], None
        for version in range(2, args.edits + 2):
            if typed is None:  # type: a comment at the end of a random line, or a character into a name
                if version % 4 == 2:
                    line = rng.randrange(len(lines))
                    col, text = u16(lines[line]), "  # x"
                else:
                    line, col = rng.choice(names)
                    col, text = u16(lines[line][:col]), "x"
                change = {"range": {"start": {"line": line, "character": col}, "end": {"line": line, "character": col}},
                          "text": text}
                typed = (line, col, len(text))
            else:  # ... and delete what was typed
                line, col, length = typed
                change = {"range": {"start": {"line": line, "character": col},
                                    "end": {"line": line, "character": col + length}}, "text": ""}
                typed = None
            pipe.notify("textDocument/didChange", {"textDocument": {"uri": big_uri, "version": version},
                                                   "contentChanges": [change]})
            if version % 25 == 0:
                hover_ids.append(pipe.request("textDocument/hover", {"textDocument": {"uri": big_uri},
                                                                     "position": {"line": line, "character": 4}}))
            if version % args.settle == 0:
                pipe.wait(lambda m, v=version: m.get("method") == "textDocument/publishDiagnostics"
                          and m["params"]["uri"] == big_uri and m["params"].get("version") == v, on_message=count)
            if (version - 1) % (args.edits // 20) == 0:
                samples.append((version - 1, tree_rss_kb(pipe.proc.pid)))
                print(f"  {version - 1} edits, {samples[-1][1] / 1024:.0f} MB, {time.perf_counter() - start:.0f} s",
                      file=sys.stderr, flush=True)
        seconds = time.perf_counter() - start
        last = args.edits + 1
        pipe.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == big_uri
                  and m["params"].get("version") == last, on_message=count)
        samples.append((args.edits, tree_rss_kb(pipe.proc.pid)))
        rid = pipe.request("shutdown", None)
        pipe.wait(lambda m: m.get("id") == rid, on_message=count)
        pipe.notify("exit", None)
        pipe.proc.wait(30)
        after_warmup = samples[2][1]
        reanalysed = {name: analysed.get(name, 0) - before_edits.get(name, 0) for name in uris}
        change = (samples[-1][1] - after_warmup) / after_warmup * 100
        return {
            "open documents": len(docs), "edited document lines": big.count("\n"), "edits": args.edits,
            f"edits per second (with a wait for diagnostics every {args.settle})": round(args.edits / seconds),
            "hovers answered": f"{len(answered & set(hover_ids))} of {len(hover_ids)}",
            "rss MB (edits: MB)": {n: round(kb / 1024, 1) for n, kb in samples},
            "rss growth after warm-up, MB": round((samples[-1][1] - after_warmup) / 1024, 1),
            f"rss change from {samples[2][0]} to {samples[-1][0]} edits, %": round(change, 1),
            "rss flat (within ±10 %)": abs(change) <= 10,
            "analyses during the edits, per document": reanalysed,
            "edits mapped through without analysis (comments)": mapped.get("big.py", 0),
            "server exit code": pipe.proc.returncode,
        }
    finally:
        if pipe.proc.poll() is None:
            pipe.proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2400)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--edits", type=int, default=5_000)
    parser.add_argument("--settle", type=int, default=10, help="wait for diagnostics every N edits")
    parser.add_argument("--open", type=int, default=5, help="documents open in the server")
    parser.add_argument("--skip-cli", action="store_true")
    parser.add_argument("--skip-server", action="store_true")
    args = parser.parse_args(argv)
    report = {"command": "python bench/scale_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "cpus": os.cpu_count()}
    if not args.skip_cli:
        report["check"] = cli_part(args)
        print(json.dumps(report["check"], indent=1), flush=True)
    if not args.skip_server:
        report["server"] = server_part(args)
        print(json.dumps(report["server"], indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
