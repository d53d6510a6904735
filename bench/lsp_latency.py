"""Language-server latency and memory, through a real stdio connection to `gradtrace server`.

    .venv/bin/python bench/lsp_latency.py                 # full run (~10 min on 2 loaded cores)
    .venv/bin/python bench/lsp_latency.py --quick         # fewer edits
    .venv/bin/python bench/lsp_latency.py --only real     # only the real files (or: generated, long-line, hover)
    .venv/bin/python bench/lsp_latency.py --downloads DIR # keep the downloaded distributions in DIR

Measures, on generated PyTorch files of 500, 2k and 5k lines:
- didChange -> publishDiagnostics for that version (push, as VS Code 1.65 / most clients), a character
  typed into a local variable's name (so every version is analysed again): p50, p95;
- didChange -> textDocument/diagnostic answer (pull, as vscode-languageclient 9 / Neovim 0.11);
- hover round trip on a diagnostic, idle and right after an edit (analysis in flight);
- server RSS with 50 open 1k-line documents.
On real files, fetched at run time with `pip download` (never committed; without the network the
benchmark says so and skips them): a model file inside a large package (diffusers'
`unets/unet_2d_condition.py`, opened in its package) and a ~2.5k-line training module (diffusers'
own `train_dreambooth_lora_sdxl_advanced.py` is not in any PyPI distribution, so trl's
`gold_trainer.py` stands in): typing into a name (every version parses) and into a comment.
A keystroke at the end of a 2 MB single-line document (not analysed: over the live limit; the cost is
applying the edit). The hover's length over the fixtures' findings (median, p95 characters).
Beside each figure the floor from the same run: `ast.parse` of the same text in this process.
Budgets (DESIGN §8): p95 <= 150 ms on 2k lines (and on a 2.5k-line script), <= 250 ms inside a package,
hover p95 <= 30 ms, RSS <= 300 MB.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from real_packages import fetch  # noqa: E402

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

    def edit(self, uri: str, version: int, line: int, column: int = 0, char: str = "#"):
        """Type one character at `line`, `column` (alternately add and remove it)."""
        start = types.Position(line, column)
        if version % 2 == 0:
            change = types.TextDocumentContentChangePartial(range=types.Range(start, start), text=char)
        else:
            change = types.TextDocumentContentChangePartial(
                range=types.Range(start, types.Position(line, column + len(char))), text="")
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
            # a local variable's name in the middle of the file to type into: every version parses
            line, column = name_to_type_into(text.split("\n"))
            times = []
            for version in range(2, edits + 2):
                t0 = time.perf_counter()
                bench.edit(uri, version, line, column, "x")
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
                    bench.edit(uri, version, line, column, "x")
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


# ---- real files ----------------------------------------------------------------------------------

TRAINING_SCRIPT = [  # (distribution, path inside it); the first that can be had is used
    ("diffusers", "examples/advanced_diffusion_training/train_dreambooth_lora_sdxl_advanced.py"),
    ("trl", "trl/experimental/gold/gold_trainer.py"),
]
MODEL_IN_PACKAGE = [("diffusers", "src/diffusers/models/unets/unet_2d_condition.py")]


def find_real_file(candidates, downloads: Path) -> Path | None:
    for distribution, inside in candidates:
        unpacked = fetch(distribution, downloads)
        if unpacked is None:
            continue
        path = unpacked / inside
        if path.is_file():
            return path
        print(f"  {distribution}: {inside} is not in the distribution on PyPI: skipped")
    return None


def name_to_type_into(lines: list[str]) -> tuple[int, int]:
    """(line, column) at the end of a local variable's name assigned in the middle of the file: a
    character typed there keeps the text parsing."""
    pattern = re.compile(r"^(\s{8,})([a-z_][a-z0-9_]*) = ")
    middle = len(lines) // 2
    for offset in range(len(lines)):
        for line in (middle + offset, middle - offset):
            if 0 <= line < len(lines) and (match := pattern.match(lines[line])):
                return line, match.end(2)
    raise ValueError("no assignment to type into")


async def real_files(workdir: Path, downloads: Path, edits: int) -> list[tuple]:
    rows = []
    for label, candidates in (("training module", TRAINING_SCRIPT), ("model file in a package", MODEL_IN_PACKAGE)):
        path = find_real_file(candidates, downloads)
        if path is None:
            print(f"  {label}: no file could be had (offline?): skipped")
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
        bench = Bench(pull=False)
        await bench.start()
        uri = path.as_uri()
        bench.open(uri, text)
        t0 = time.perf_counter()
        await bench.wait_version(uri, 1, timeout=600)
        first = time.perf_counter() - t0
        name_line, name_col = name_to_type_into(lines)
        comment_line = name_line
        version = 1
        figures = {}
        for kind, (line, column, char) in (("name", (name_line, name_col, "x")),
                                           ("comment", (comment_line, len(lines[comment_line]), "  # x"))):
            times = []
            for _ in range(edits):
                version += 1
                t0 = time.perf_counter()
                bench.edit(uri, version, line, column, char)
                await bench.wait_version(uri, version, timeout=600)
                times.append(time.perf_counter() - t0)
                await asyncio.sleep(0.05)
            figures[kind] = times
        await bench.stop()
        floor = min(_parse_time(text) for _ in range(5))
        rows.append((label, path.relative_to(downloads), len(lines), first, figures, floor))
    return rows


def _parse_time(text: str) -> float:
    t0 = time.perf_counter()
    ast.parse(text)
    return time.perf_counter() - t0


# ---- a 2 MB line, and the hover's length --------------------------------------------------------


async def long_line(workdir: Path, keystrokes: int) -> tuple[list[float], float, float]:
    """Keystroke at the end of a 2 MB single line -> a hover answered after it (the edit is applied first)."""
    text = "x = '" + "😋" + "a" * 2_000_000 + "'\n"
    bench = Bench(pull=False)
    await bench.start()
    small = workdir / "small.py"
    small.write_text("import torch\n")
    bench.open(small.as_uri(), "import torch\n")
    await bench.wait_version(small.as_uri(), 1)
    round_trip = []
    for _ in range(20):
        t0 = time.perf_counter()
        await bench.hover(small.as_uri(), types.Position(0, 1))
        round_trip.append(time.perf_counter() - t0)
    path = workdir / "long_line.py"
    path.write_text(text)
    uri = path.as_uri()
    bench.open(uri, text)
    await bench.wait_version(uri, 1, timeout=120)
    end = len(text.rstrip("\n").encode("utf-16-le")) // 2
    times = []
    for version in range(2, keystrokes + 2):
        t0 = time.perf_counter()
        bench.edit(uri, version, 0, end, "b")
        await bench.hover(uri, types.Position(0, 1))
        times.append(time.perf_counter() - t0)
    await bench.stop()
    return times, statistics.median(round_trip), _parse_time(text)


async def hover_lengths() -> list[int]:
    """The hover of every finding in fixtures/, as a client receives it."""
    bench = Bench(pull=False)
    await bench.start()
    lengths = []
    for path in sorted((ROOT / "fixtures").rglob("*.py")):
        uri = path.as_uri()
        bench.open(uri, path.read_text(encoding="utf-8"))
        await bench.wait_version(uri, 1, timeout=120)
        for diagnostic in bench.last[uri][1]:
            hover = await bench.hover(uri, diagnostic.range.start)
            if hover is not None:
                lengths.append(len(hover.contents.value))
    await bench.stop()
    return sorted(lengths)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 edits per size instead of 100")
    parser.add_argument("--edits", type=int, default=None)
    parser.add_argument("--real-edits", type=int, default=20, help="edits per real file and kind of edit")
    parser.add_argument("--only", choices=("generated", "real", "long-line", "hover"), default=None)
    parser.add_argument("--downloads", type=Path, default=None, help="where to keep pip downloads (default: a temp dir)")
    args = parser.parse_args()
    edits = args.edits or (30 if args.quick else 100)
    sizes = [500, 2000, 5000]
    with tempfile.TemporaryDirectory(prefix="gradtrace-bench-") as tmp:
        workdir = Path(tmp)
        print(f"gradtrace server latency: {edits} edits per size, python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
        print(f"command: {Path(sys.executable).name} bench/lsp_latency.py {' '.join(sys.argv[1:])}".rstrip())
        if args.only in (None, "generated"):
            await generated(workdir, sizes, edits)
        if args.only in (None, "real"):
            downloads = args.downloads or workdir / "downloads"
            downloads.mkdir(parents=True, exist_ok=True)
            print("\nreal files (didChange -> diagnostics, push), fetched with pip download:")
            for label, where, count, first, figures, floor in await real_files(workdir, downloads, args.real_edits):
                print(f"  {label}: {where} ({count} lines); first diagnostics after opening {first:.1f} s; "
                      f"ast.parse floor {ms(floor).strip()} ms")
                for kind, times in figures.items():
                    what = "typing into a name (analysed)" if kind == "name" else "typing into a comment (mapped)"
                    print(f"    {what:34} p50 {ms(pct(times, 50))} ms  p95 {ms(pct(times, 95))} ms  "
                          f"({len(times)} edits)")
        if args.only in (None, "long-line"):
            times, round_trip, floor = await long_line(workdir, 40)
            print(f"\na keystroke at the end of a 2 MB single-line document, then a hover (ms): "
                  f"p50 {ms(pct(times, 50))}  p95 {ms(pct(times, 95))}   | floor: a hover round trip "
                  f"{ms(round_trip).strip()}, ast.parse of the text {ms(floor).strip()}")
        if args.only in (None, "hover"):
            lengths = await hover_lengths()
            print(f"\nhover length over the fixtures' {len(lengths)} findings (characters): "
                  f"median {statistics.median(lengths):.0f}, p95 {pct(lengths, 95):.0f}, max {max(lengths)}")
    return 0


async def generated(workdir: Path, sizes: list[int], edits: int) -> None:
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
    p95_2k = pct(res["push"][2000][0], 95)
    ok = p95_2k <= 0.150 and pct(hov["idle"], 95) <= 0.030 and rss[1] <= 300
    print(f"\nbudgets (p95 <= 150 ms @2k push, hover p95 <= 30 ms, RSS <= 300 MB): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
