"""Scale behaviour (the figures are in `bench/scale_bench.py`; here only what a user sees):
the `check` cache never changes an answer, and the server re-analyses only the document that changed.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from lsprotocol import types

from tests.hardening.harness import LiveServer
from tests.lsp.helpers import SERVER_ENV

ROOT = Path(__file__).resolve().parents[2]


def check(tree: Path, cache: Path, *extra: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "gradtrace", "check", "-j", "2", "--format", "json", *extra, str(tree)],
                          capture_output=True, text=True, env={**SERVER_ENV, "GRADTRACE_CACHE_DIR": str(cache)},
                          timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def test_cached_runs_answer_like_uncached_ones(tmp_path):
    tree, cache = tmp_path / "tree", tmp_path / "cache"
    for n in range(3):  # three copies of every fixture directory: 80+ files
        shutil.copytree(ROOT / "fixtures", tree / f"copy{n}")
    cold = check(tree, cache)
    assert len(cold) > 50 and any(cache.iterdir())
    assert check(tree, cache) == cold
    assert check(tree, cache, "--no-cache") == cold
    # a file changes: its own findings change, nothing else
    victim = tree / "copy1" / "torch" / "bad_detach.py"
    victim.write_text("import torch\n", encoding="utf-8")
    after = check(tree, cache)
    assert after == [f for f in cold if f["path"] != str(victim)]
    # a model next door changes: the file that imports it is checked again
    model, train = tree / "copy2" / "project" / "model.py", str(tree / "copy2" / "project" / "train.py")
    before_train = [f for f in after if f["path"] == train]
    model.write_text(model.read_text(encoding="utf-8") + "\n\nclass Extra:\n    pass\n", encoding="utf-8")
    assert check(tree, cache) == check(tree, cache, "--no-cache")
    assert [f for f in check(tree, cache) if f["path"] == train] == before_train


def test_the_server_reanalyses_only_the_document_that_changed(tmp_path):
    server = LiveServer(pull=False, encodings=["utf-16"], init_options={"logLevel": "debug"}).start()
    try:
        client = server.client
        texts = {name: (ROOT / "fixtures" / "torch" / name).read_text(encoding="utf-8")
                 for name in ("bad_detach.py", "bad_no_grad.py", "good_training_loop.py")}
        uris = {}
        for name, text in texts.items():
            uris[name] = (tmp_path / name).as_uri()
            client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
                uri=uris[name], language_id="python", version=1, text=text)))

        def analyses() -> dict[str, int]:
            counts: dict[str, int] = {}
            for m in client.log_messages:
                hit = re.match(r"(\S+\.py) v\S+: \d+ findings in", m.message)
                if hit:
                    counts[hit.group(1)] = counts.get(hit.group(1), 0) + 1
            return counts

        async def published(uri, version):
            for _ in range(1500):
                if any(p.uri == uri and p.version == version for p in client.published):
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"no diagnostics for {uri} v{version}")

        for name in texts:
            server.run(published(uris[name], 1))
        before = analyses()
        assert before == dict.fromkeys(texts, 1)
        edited = uris["bad_detach.py"]
        for version in range(2, 32):
            client.text_document_did_change(types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=edited, version=version),
                content_changes=[types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(line=0, character=0),
                                      end=types.Position(line=0, character=0)), text="#")]))
            if version % 5 == 0:
                server.run(published(edited, version))
        server.run(published(edited, 31))
        after = analyses()
        assert after["bad_no_grad.py"] == 1 and after["good_training_loop.py"] == 1, after
        assert 6 <= after["bad_detach.py"] <= 31, after
    finally:
        code = server.close()
    assert code == 0
