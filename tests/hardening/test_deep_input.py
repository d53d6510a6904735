"""Pathological code: `gradtrace check` and the server never let a RecursionError or a traceback out.

Code Python itself refuses (10k nested parentheses, a 100k-term sum, a 10k-digit literal) gets GT000
"not analysed"; code Python accepts but gradtrace cannot follow to the end (5k chained calls, 100k
lines) gets one GT002 "not fully analysed"; big but shallow literals are simply analysed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from lsprotocol import types

from tests.hardening.harness import LiveServer
from tests.lsp.helpers import DATA, SERVER_ENV

DETACH = (DATA / "detach.py").read_text(encoding="utf-8")

CASES = {
    # name: (source, codes `check` reports)
    "parens_10k": ("import torch\nx = " + "(" * 10_000 + "1" + ")" * 10_000 + "\n", ["GT000"]),
    "lists_10k": ("import torch\nx = " + "[" * 10_000 + "]" * 10_000 + "\n", ["GT000"]),
    "sum_100k_terms": ("import torch\nx = torch.ones(3)\ny = " + " + ".join(["x"] * 100_000) + "\n", ["GT000"]),
    "lambdas_3k": ("import torch\nf = " + "lambda: " * 3000 + "torch.ones(1)\n", ["GT000"]),
    "int_10k_digits": ("import torch\nx = " + "9" * 10_000 + "\n", ["GT000"]),
    "chained_calls_5k": ("import torch\nw = torch.nn.Parameter(torch.ones(3))\ny = w.detach()" + ".a()" * 5000
                         + "\ny.sum().backward()\n", ["GT002"]),
    "subscripts_20k": ("import torch\nx = torch.ones(3)" + "[0]" * 20_000 + "\n", ["GT002"]),
    "tf_subscripts_20k": ("import tensorflow as tf\nw = tf.Variable(1.0)\nwith tf.GradientTape() as tape:\n"
                          "    y = tf.stop_gradient(w)" + "[0]" * 20_000 + "\ng = tape.gradient(y, w)\n", ["GT002"]),
    "jax_chained_calls_5k": ("import jax\ndef f(w):\n    return jax.lax.stop_gradient(w)" + ".a()" * 5000
                             + "\ng = jax.grad(f)(1.0)\n", ["GT002"]),
    # functions that share a line (a lambda returning a lambda) reading a rebound module global
    "lambdas_on_one_line": ("import jax\nscale = 2.0\nscale = 3.0\n"
                            "f = jax.jit(lambda p: (lambda q: q * scale)(p))\ng = lambda a: lambda b: a * b * scale\n"
                            "y = f(1.0) + g(1)(2)\n", []),
    "string_5mb": ("import torch\nx = '" + "a" * 5_000_000 + "'\n", []),
    "line_100k_chars": ("import torch\nx = [" + "1, " * 33_000 + "]\n" + DETACH, ["GT105"]),
    # long but plain: analysed to the end (about three times its parse), nothing to report
    "lines_100k": ("import torch\n" + "".join(f"x{i} = torch.ones(3) * {i}\n" for i in range(100_000)), []),
}


def run_check(path) -> tuple[int, list[dict], str]:
    proc = subprocess.run([sys.executable, "-m", "gradtrace", "check", "--no-cache", "--format", "json", str(path)],
                          capture_output=True, text=True, env=SERVER_ENV, timeout=240)
    return proc.returncode, json.loads(proc.stdout or "null"), proc.stderr


@pytest.mark.parametrize("name", list(CASES))
def test_check_on_pathological_code(tmp_path, name):
    source, codes = CASES[name]
    path = tmp_path / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    code, findings, stderr = run_check(path)
    assert "Traceback" not in stderr and "RecursionError" not in stderr and "internal error" not in stderr, stderr
    assert code == (1 if codes else 0), (code, stderr)
    assert [f["code"] for f in findings] == codes
    for f in findings:
        if f["code"] in ("GT000", "GT002"):
            assert "not analysed" in f["message"].lower() or "not fully analysed" in f["message"].lower(), f
            assert f["severity"] == ("error" if f["code"] == "GT000" else "information")


def test_the_rest_of_a_directory_is_still_checked(tmp_path):
    """A pathological file among good ones: every file gets its findings, in one run."""
    for name in ("parens_10k", "chained_calls_5k", "sum_100k_terms"):
        (tmp_path / f"{name}.py").write_text(CASES[name][0], encoding="utf-8")
    (tmp_path / "train.py").write_text(DETACH, encoding="utf-8")
    code, findings, stderr = run_check(tmp_path)
    assert code == 1 and "Traceback" not in stderr, stderr
    by_file = {}
    for f in findings:
        by_file.setdefault(f["path"].rsplit("/", 1)[-1], []).append(f["code"])
    assert by_file == {"chained_calls_5k.py": ["GT002"], "parens_10k.py": ["GT000"],
                       "sum_100k_terms.py": ["GT000"], "train.py": ["GT105"]}


LIVE = {  # what the server publishes for the same documents (over 1 MB: GT001, not analysed live)
    "parens_10k": ["GT000"], "chained_calls_5k": ["GT002"], "sum_100k_terms": ["GT000"], "lambdas_3k": ["GT000"],
    "subscripts_20k": ["GT002"], "line_100k_chars": ["GT105"], "lines_100k": ["GT001"], "string_5mb": ["GT001"],
}


def test_server_on_pathological_code(tmp_path):
    server = LiveServer(pull=False, encodings=["utf-16"]).start()
    try:
        client = server.client
        for version, (name, codes) in enumerate(LIVE.items(), start=1):
            uri = (tmp_path / f"{name}.py").as_uri()
            client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=version, text=CASES[name][0])))

            async def published(uri=uri, version=version):
                for _ in range(3000):
                    for params in reversed(client.published):
                        if params.uri == uri and params.version == version:
                            return [d.code for d in params.diagnostics]
                    await asyncio.sleep(0.02)
                raise AssertionError(f"no diagnostics for {uri}")

            assert server.run(published(), timeout=120) == codes, name
            hover = server.run(client.text_document_hover_async(types.HoverParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=1, character=2))))
            assert hover is None or hover.contents
            client.text_document_did_close(types.DidCloseTextDocumentParams(
                text_document=types.TextDocumentIdentifier(uri=uri)))
        assert server.returncode is None
        assert not server.problems(), server.problems()[:3]
    finally:
        code = server.close()
    assert code == 0, "".join(server.stderr)[-3000:]
