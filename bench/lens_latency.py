"""The gradient lens: what it adds to each analysis, hover latency on plain values, code lens after diagnostics.

    .venv/bin/python bench/lens_latency.py              # 2,000-line generated file, 40 edits, 300 hovers
    .venv/bin/python bench/lens_latency.py --quick      # 10 edits, 100 hovers

Measures, on the generated PyTorch file of `lsp_latency.py` (2,000 lines; a `.detach()` before each loss):
- in process: `check_source` of the text, then `Lens(ctx).index()` (every observed value's span and what it
  carries, the losses, the inlay hints: what the analysis process adds to each analysis and sends with the
  findings), and its pickled size; floor: `ast.parse` of the same text;
- through a real `gradtrace server` over stdio (push diagnostics): a character typed into a name (every
  version is analysed), then at once a `textDocument/codeLens` request (an editor asks as the text changes):
  the time from that version's `publishDiagnostics` to the code lens answer (budget 50 ms); and the code lens
  round trip once the analysis is there;
- hover on plain values (no finding there: the lens alone), idle and right after an edit (the analysis of the
  next version running); floor: a hover on a blank line in the same run (the round trip with nothing to say).
Budgets (DESIGN §8 and the lens issue): hover p95 <= 30 ms, code lens <= 50 ms after diagnostics.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import pickle
import re
import sys
import tempfile
import time
from pathlib import Path

from lsp_latency import Bench, make_source, ms, name_to_type_into, pct
from lsprotocol import types

SIZE = 2000


def in_process(text: str, rounds: int = 5) -> dict:
    from gradtrace.analysis.lens import Lens
    from gradtrace.engine import check_source

    parse, check, lens, size = [], [], [], 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        ast.parse(text)
        t1 = time.perf_counter()
        result = check_source(text, "bench.py")
        t2 = time.perf_counter()
        index = Lens(result.context).index()
        t3 = time.perf_counter()
        parse.append(t1 - t0)
        check.append(t2 - t1)
        lens.append(t3 - t2)
        size = len(pickle.dumps(index))
    return {"parse": min(parse), "check": min(check), "lens": min(lens), "bytes": size,
            "values": len(index.values) // 5, "rows": len(index.carried), "sinks": len(index.sinks)}


def plain_values(lines: list[str], count: int) -> list[types.Position]:
    """Positions on assigned names inside the training functions (`logits = ...`, `loss = ...`): no finding."""
    out = []
    for number, line in enumerate(lines):
        match = re.match(r"    (logits|loss) = ", line)
        if match:
            out.append(types.Position(number, 4 + len(match.group(1)) // 2))
    return (out * (count // max(1, len(out)) + 1))[:count]


async def through_the_server(text: str, workdir: Path, edits: int, hovers: int) -> dict:
    bench = Bench(pull=False)
    await bench.start()
    try:
        path = workdir / "lens_bench.py"
        path.write_text(text)
        uri = path.as_uri()
        bench.open(uri, text)
        await bench.wait_version(uri, 1, timeout=120)
        lines = text.split("\n")
        blank = types.Position(next(i for i, line in enumerate(lines) if not line.strip()), 0)
        positions = plain_values(lines, hovers)
        hover_idle, floor = [], []
        first = await bench.hover(uri, positions[0])
        assert first is not None and "carries gradient" in first.contents.value, first
        for pos in positions:
            t0 = time.perf_counter()
            await bench.hover(uri, pos)
            hover_idle.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await bench.hover(uri, blank)
            floor.append(time.perf_counter() - t0)
        params = types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri))
        cached = []
        for _ in range(50):
            t0 = time.perf_counter()
            lenses = await bench.client.text_document_code_lens_async(params)
            cached.append(time.perf_counter() - t0)
        assert lenses and "reaches" in lenses[0].command.title, lenses
        line, column = name_to_type_into(lines)
        after, hover_busy = [], []
        for version in range(2, edits + 2):
            bench.edit(uri, version, line, column, "x")
            asked = asyncio.ensure_future(bench.client.text_document_code_lens_async(params))
            diagnosed = asyncio.ensure_future(bench.wait_version(uri, version, timeout=120))
            await asyncio.sleep(0.005)  # the analysis of this version is running: hover meanwhile
            t0 = time.perf_counter()
            await bench.hover(uri, positions[version % len(positions)])
            hover_busy.append(time.perf_counter() - t0)
            await diagnosed
            t_diag = time.perf_counter()
            await asked
            after.append(max(0.0, time.perf_counter() - t_diag))
            await asyncio.sleep(0.05)
        return {"hover_idle": hover_idle, "hover_busy": hover_busy, "floor": floor, "lens_after": after,
                "lens_cached": cached}
    finally:
        await bench.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    edits, hovers = (10, 100) if args.quick else (40, 300)
    text = make_source(SIZE)
    print(f"gradient lens on a generated {SIZE}-line PyTorch file")
    cost = in_process(text)
    print(f"  in process: check_source {ms(cost['check'])} ms, Lens.index() {ms(cost['lens'])} ms "
          f"(+{100 * cost['lens'] / cost['check']:.0f} %), {cost['values']} values in {cost['rows']} rows, "
          f"{cost['sinks']} losses, {cost['bytes'] / 1024:.0f} kB pickled; floor ast.parse {ms(cost['parse'])} ms")
    with tempfile.TemporaryDirectory() as tmp:
        got = asyncio.run(through_the_server(text, Path(tmp), edits, hovers))
    rows = [("hover on a plain value, idle", got["hover_idle"]),
            ("hover on a plain value, right after an edit", got["hover_busy"]),
            ("floor: hover on a blank line (nothing to say)", got["floor"]),
            ("code lens answer after that version's diagnostics", got["lens_after"]),
            ("code lens round trip, analysis already there", got["lens_cached"])]
    print(f"  {'':52} {'p50 ms':>8} {'p95 ms':>8} {'n':>5}")
    for name, values in rows:
        print(f"  {name:52} {ms(pct(values, 50)):>8} {ms(pct(values, 95)):>8} {len(values):>5}")
    print("  budgets: hover p95 <= 30 ms; code lens <= 50 ms after diagnostics")
    print(f"  reproduce: .venv/bin/python bench/lens_latency.py{' --quick' if args.quick else ''}")


if __name__ == "__main__":
    sys.exit(main())
