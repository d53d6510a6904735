"""Cold start of the language server: from spawning it to the first diagnostics of a file.

    .venv/bin/python bench/cold_start.py                  # the server from this checkout (server/)
    .venv/bin/python bench/cold_start.py --bundled        # the bundle the .vsix ships (extension/bundled/libs;
                                                          # build it first with scripts/package-extension.sh)

A stdio JSON-RPC client of its own (no LSP library in the measured path) starts the server as the VS Code
extension does, sends initialize, initialized and didOpen for a training script with one finding, then pulls
`textDocument/diagnostic` until the finding is there. Each run is a fresh process. Printed per phase (median
of --runs): process start -> initialize answered, -> first diagnostics; beside them the floor from the same run:
the same interpreter starting and exiting (`-c pass`), and importing what any pygls server imports
(`lsprotocol.types` and `pygls.lsp.server`). With --bundled, a first run without byte code (a fresh copy of the
bundle with no __pycache__, as a .vsix without byte code would start) is shown beside the runs with byte code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a training script with one finding (GT105): the file the editor's end-to-end test opens first
SCRIPT = (ROOT / "tests" / "vscode" / "workspace" / "train.py").read_text(encoding="utf-8")


class Connection:
    """Content-Length framed JSON-RPC over a child's stdin/stdout."""

    def __init__(self, cmd: list[str], cwd: str, env: dict):
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.next_id = 0

    def send(self, method: str, params, request: bool = True) -> int | None:
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        msg_id = None
        if request:
            self.next_id += 1
            msg_id = message["id"] = self.next_id
        body = json.dumps(message).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.proc.stdin.flush()
        return msg_id

    def receive(self) -> dict:
        length = 0
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the server closed its output")
            if line in (b"\r\n", b"\n"):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return json.loads(self.proc.stdout.read(length))

    def answer(self, msg_id: int) -> dict:
        """Wait for the response to `msg_id`; answer the server's own requests on the way."""
        while True:
            message = self.receive()
            if message.get("id") == msg_id and "method" not in message:
                return message
            if "method" in message and "id" in message:  # e.g. workspace/configuration, registerCapability
                result = [None] * len(message["params"].get("items", [])) if message["method"] == \
                    "workspace/configuration" else None
                body = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}).encode()
                self.proc.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.answer(self.send("shutdown", None))
            self.send("exit", None, request=False)
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def one_run(cmd: list[str], workspace: Path, env: dict) -> tuple[float, float]:
    path = workspace / "train.py"
    uri = path.as_uri()
    start = time.perf_counter()
    conn = Connection(cmd, str(workspace), env)
    try:
        caps = {"textDocument": {"diagnostic": {"dynamicRegistration": False}, "publishDiagnostics": {}},
                "general": {"positionEncodings": ["utf-16"]}}
        conn.answer(conn.send("initialize", {"processId": os.getpid(), "rootUri": workspace.as_uri(),
                                             "capabilities": caps, "initializationOptions": {"settings": {}}}))
        initialized = time.perf_counter() - start
        conn.send("initialized", {}, request=False)
        conn.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                            "text": path.read_text()}}, request=False)
        deadline = start + 120
        while time.perf_counter() < deadline:
            reply = conn.answer(conn.send("textDocument/diagnostic", {"textDocument": {"uri": uri}}))
            items = (reply.get("result") or {}).get("items") or []
            if any(str(d.get("code", "")).startswith("GT") for d in items):
                return initialized, time.perf_counter() - start
            time.sleep(0.02)
        raise RuntimeError("no diagnostics within 120 s")
    finally:
        conn.close()


def timed(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundled", action="store_true", help="start the bundle in extension/bundled/libs")
    parser.add_argument("--python", default=sys.executable, help="the interpreter (default: this one)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gradtrace-cold-"))
    (work / "train.py").write_text(SCRIPT)
    launcher = ROOT / "extension" / "bundled" / "tool" / "gradtrace_launcher.py"
    libs = ROOT / "extension" / "bundled" / "libs"
    env = dict(os.environ)
    try:
        if args.bundled:
            if not libs.is_dir():
                print("no bundle: run scripts/package-extension.sh first", file=sys.stderr)
                return 2
            fresh = work / "libs"
            shutil.copytree(libs, fresh, ignore=shutil.ignore_patterns("__pycache__"))
            first = one_run([args.python, "-I", str(launcher), "--libs", str(fresh)], work, env)
            print(f"bundle without byte code, first start: initialize {first[0]:.2f} s, "
                  f"first diagnostics {first[1]:.2f} s")
            cmd = [args.python, "-I", str(launcher), "--libs", str(libs)]
            imports = [args.python, "-I", "-c", f"import sys; sys.path[:0] = {[str(p) for p in _dirs(libs)]!r}; "
                       "import lsprotocol.types, pygls.lsp.server"]
        else:
            env["PYTHONPATH"] = str(ROOT / "server")
            cmd = [args.python, "-m", "gradtrace", "server"]
            imports = [args.python, "-c", "import lsprotocol.types, pygls.lsp.server"]
        one_run(cmd, work, env)  # byte code written, caches warm
        results = [one_run(cmd, work, env) for _ in range(args.runs)]
        init = statistics.median(r[0] for r in results)
        diag = statistics.median(r[1] for r in results)
        floor_start = timed([args.python, "-I", "-c", "pass"], args.runs)
        floor_imports = timed(imports, args.runs)
        print(f"server: {' '.join(cmd[1:])}")
        print(f"  initialize answered   {init:6.2f} s   (floor: interpreter start {floor_start:.2f} s, "
              f"+ lsprotocol/pygls imports {floor_imports:.2f} s)")
        print(f"  first diagnostics     {diag:6.2f} s   (median of {args.runs}; budget 3 s to the first squiggle)")
        print(f"reproduce: {sys.executable} bench/cold_start.py{' --bundled' if args.bundled else ''}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _dirs(libs: Path) -> list[Path]:
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    return [libs / tag, libs / "common"]


if __name__ == "__main__":
    sys.exit(main())
