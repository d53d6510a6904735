"""Language-server latency and memory, through a real stdio connection to `gradtrace server`.

    .venv/bin/python bench/lsp_latency.py            # full run (~1-2 min on 2 cores)
    .venv/bin/python bench/lsp_latency.py --quick    # fewer edits

Measures, on generated PyTorch files of 500, 2k and 5k lines:
- didChange -> publishDiagnostics for that version (push, as VS Code 1.65 / most clients): p50, p95;
- didChange -> textDocument/diagnostic answer (pull, as vscode-languageclient 9 / Neovim 0.11);
- hover round trip on a diagnostic, idle and right after an edit (analysis in flight);
- server RSS with 50 open 1k-line documents.
Beside each figure the floor from the same run: `ast.parse` of the same text in this process.
Budgets (DESIGN §8): p95 <= 150 ms on 2k lines, hover p95 <= 30 ms, RSS <= 300 MB.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parents[1]
BLOCK = '''
class Block{i}(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.gate = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        h = self.norm(x)
        h = self.proj(h) * torch.sigmoid(self.gate)
        return x + h


def train_step_{i}(model, batch, opt):
    x, y = batch
    feats = model.encoder(x).detach()
    logits = model.head(feats)
    loss = F.cross_entropy(logits, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def evaluate_{i}(model, loader):
    model.eval()
    total = torch.zeros(1, require_grad=True)
    with torch.no_grad():
        for x, y in loader:
            total = total + F.cross_entropy(model(x), y).item()
    return total / max(1, len(loader))
'''
HEADER = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


def make_source(lines: int) -> str:
    parts, i = [HEADER], 0
    while sum(p.count("\n") for p in parts) < lines:
        parts.append(BLOCK.format(i=i))
        i += 1
    text = "".join(parts)
    return "\n".join(text.split("\n")[:lines]) + "\n"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = max(0, min(len(values) - 1, round(q / 100 * (len(values) - 1))))
    return values[k]


def ms(v: float) -> str:
    return f"{v * 1000:7.1f}"


class Bench:
    def __init__(self, pull: bool):
        self.pull = pull
        self.client = LanguageClient("gradtrace-bench", "1")
        self.published: dict[str, asyncio.Event] = {}
        self.last: dict[str, tuple[int | None, list]] = {}

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def _publish(params: types.PublishDiagnosticsParams):
            self.last[params.uri] = (params.version, params.diagnostics)
            event = self.published.get(params.uri)
            if event:
                event.set()

        @self.client.feature(types.WINDOW_LOG_MESSAGE)
        def _log(params):
            pass

        @self.client.feature(types.WINDOW_SHOW_MESSAGE)
        def _show(params):
            pass

    async def start(self):
        env = {**os.environ, "PYTHONPATH": str(ROOT / "server")}
        await self.client.start_io(sys.executable, "-m", "gradtrace", "server", env=env)
        caps = types.ClientCapabilities(
            text_document=types.TextDocumentClientCapabilities(
                publish_diagnostics=types.PublishDiagnosticsClientCapabilities(related_information=True),
                diagnostic=types.DiagnosticClientCapabilities() if self.pull else None,
            ))
        await self.client.initialize_async(types.InitializeParams(capabilities=caps))
        self.client.initialized(types.InitializedParams())

    @property
    def pid(self) -> int:
        return self.client._server.pid  # type: ignore[union-attr]

    async def stop(self):
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()

    def open(self, uri: str, text: str):
        self.published[uri] = asyncio.Event()
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))

    async def wait_version(self, uri: str, version: int, timeout: float = 60.0):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.last.get(uri, (None,))[0] != version:
            event = self.published[uri]
            event.clear()
            if self.last.get(uri, (None,))[0] == version:
                break
            await asyncio.wait_for(event.wait(), max(0.01, deadline - loop.time()))

    async def diagnostics(self, uri: str):
        report = await self.client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
            text_document=types.TextDocumentIdentifier(uri)))
        return report.items

    def edit(self, uri: str, version: int, line: int):
        """Type one character into a comment at `line` (alternately add and remove it)."""
        if version % 2 == 0:
            change = types.TextDocumentContentChangePartial(
                range=types.Range(types.Position(line, 0), types.Position(line, 0)), text="#")
        else:
            change = types.TextDocumentContentChangePartial(
                range=types.Range(types.Position(line, 0), types.Position(line, 1)), text="")
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version), content_changes=[change]))

    async def hover(self, uri: str, pos: types.Position):
        return await self.client.text_document_hover_async(types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri), position=pos))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def tree_rss_mb(pid: int) -> tuple[float, float]:
    """(server RSS, server + its analysis processes RSS)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += rss_mb(current)
        except OSError:
            pass
        todo.extend(children.get(current, []))
    return rss_mb(pid), total


async def latency(workdir: Path, sizes: list[int], edits: int) -> dict:
    results: dict = {"push": {}, "pull": {}, "hover": {}}
    for pull in (False, True):
        bench = Bench(pull)
        await bench.start()
        for size in sizes:
            text = make_source(size)
            path = workdir / f"bench_{size}_{'pull' if pull else 'push'}.py"
            path.write_text(text)
            uri = path.as_uri()
            bench.open(uri, text)
            if pull:
                first = await bench.diagnostics(uri)
            else:
                await bench.wait_version(uri, 1)
                first = bench.last[uri][1]
            # a blank line in the middle of the file to type into
            lines = text.split("\n")
            line = next(i for i in range(len(lines) // 2, len(lines)) if lines[i] == "")
            times = []
            for version in range(2, edits + 2):
                t0 = time.perf_counter()
                bench.edit(uri, version, line)
                if pull:
                    await bench.diagnostics(uri)
                else:
                    await bench.wait_version(uri, version)
                times.append(time.perf_counter() - t0)
                await asyncio.sleep(0.05)  # typing pace: the next key after the result
            t0 = time.perf_counter()
            for _ in range(5):
                ast.parse(text)
            floor = (time.perf_counter() - t0) / 5
            results["pull" if pull else "push"][size] = (times, floor, len(first))
            if not pull and size == 2000 and first:
                pos = first[0].range.start
                idle, busy = [], []
                for _ in range(200):
                    t0 = time.perf_counter()
                    await bench.hover(uri, pos)
                    idle.append(time.perf_counter() - t0)
                for version in range(edits + 2, edits + 2 + 60):
                    bench.edit(uri, version, line)
                    await asyncio.sleep(0.005)  # the analysis of this version is now running
                    t0 = time.perf_counter()
                    await bench.hover(uri, pos)
                    busy.append(time.perf_counter() - t0)
                    await bench.wait_version(uri, version)
                results["hover"] = {"idle": idle, "busy": busy}
        await bench.stop()
    return results


async def memory(workdir: Path, docs: int, lines: int):
    bench = Bench(pull=False)
    await bench.start()
    await asyncio.sleep(2.0)
    start = tree_rss_mb(bench.pid)
    uris = []
    for i in range(docs):
        text = make_source(lines).replace("Block", f"Doc{i}Block")
        path = workdir / f"mem_{i}.py"
        path.write_text(text)
        uri = path.as_uri()
        uris.append(uri)
        bench.open(uri, text)
    for uri in uris:
        await bench.wait_version(uri, 1, timeout=120)
    await asyncio.sleep(0.5)
    rss = tree_rss_mb(bench.pid)
    await bench.stop()
    return start, rss


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 edits per size instead of 100")
    parser.add_argument("--edits", type=int, default=None)
    args = parser.parse_args()
    edits = args.edits or (30 if args.quick else 100)
    sizes = [500, 2000, 5000]
    with tempfile.TemporaryDirectory(prefix="gradtrace-bench-") as tmp:
        workdir = Path(tmp)
        print(f"gradtrace server latency: {edits} edits per size, python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
        print(f"command: {Path(sys.executable).name} bench/lsp_latency.py {' '.join(sys.argv[1:])}".rstrip())
        res = await latency(workdir, sizes, edits)
        print("\ndidChange -> diagnostics (ms)   p50     p95     max   | ast.parse floor | findings")
        for mode in ("push", "pull"):
            for size in sizes:
                times, floor, n = res[mode][size]
                print(f"  {mode:4} {size:5} lines        {ms(pct(times, 50))} {ms(pct(times, 95))} {ms(max(times))}"
                      f"   | {ms(floor)}        | {n}")
        hov = res["hover"]
        print("\nhover on a diagnostic, 2k lines (ms)   p50     p95")
        print(f"  idle (200 requests)            {ms(pct(hov['idle'], 50))} {ms(pct(hov['idle'], 95))}")
        print(f"  right after an edit (60)       {ms(pct(hov['busy'], 50))} {ms(pct(hov['busy'], 95))}")
        start, rss = await memory(workdir, 50, 1000)
        print(f"(load average {os.getloadavg()[0]:.1f} at the end; figures under load are not comparable)")
        print(f"\nRSS at start: server {start[0]:.0f} MB, with its analysis processes {start[1]:.0f} MB")
        print(f"RSS with 50 open 1k-line documents analysed: server {rss[0]:.0f} MB, "
              f"with its analysis processes {rss[1]:.0f} MB")
        rss = rss[1]
        p95_2k = pct(res["push"][2000][0], 95)
        ok = p95_2k <= 0.150 and pct(hov["idle"], 95) <= 0.030 and rss <= 300
        print(f"\nbudgets (p95 <= 150 ms @2k push, hover p95 <= 30 ms, RSS <= 300 MB): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
