"""Fuzzing the language server through a real stdio session.

Each hypothesis example is one document: a fixture file (or nothing) opened, then edited with
random inserts, deletions, truncations, random bytes, deep nesting, 10k-character lines, mixed line
endings and non-BMP characters — as incremental or whole-document didChange — with hovers and code
actions at random positions in between. After every example: the server is alive, logged no crash,
answered every request (no error responses), and every range it returned (published or pulled
diagnostics, related information, hover ranges, code-action edits, resolved edits) lies inside the
document version it describes, on character boundaries of the negotiated position encoding.

CI size: 510 documents over three sessions (push/UTF-16, pull/UTF-8, push/UTF-32).
Long run: `GRADTRACE_LONG_FUZZ=1` (10,200 documents, random seeds; `GRADTRACE_FUZZ_DOCS=N` to
choose the count; `GRADTRACE_FUZZ_REPORT=file.json` writes the tallies).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.hardening.harness import (
    LiveServer,
    end_position,
    lsp_lines,
    offset_of,
    position_at,
    range_problem,
)

ROOT = Path(__file__).resolve().parents[2]
LONG = os.environ.get("GRADTRACE_LONG_FUZZ") == "1"
TOTAL = int(os.environ.get("GRADTRACE_FUZZ_DOCS") or (10_200 if LONG else 510))
SESSIONS = {  # name -> (pull, offered encodings, share of the documents)
    "push-utf16": (False, ["utf-16"], 0.4),
    "pull-utf8": (True, ["utf-8"], 0.4),
    "push-utf32": (False, ["utf-32"], 0.2),
}
FIXTURES = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "fixtures").rglob("*.py"))]
assert len(FIXTURES) >= 20
STATS: Counter = Counter()
REQUEST_TIMEOUT = 30.0

# Fragments that matter to a Python tokenizer, to the engine, or to position arithmetic.
FRAGMENTS = [
    "(", ")", "[", "]", "{", "}", ":", ",", ".", "\n", "\r\n", "\r", "    ", "\t", "\\\n", "#", "'''", '"',
    "'", "f'{", "}'", "b'", "\x00", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029",
    "\ufeff", "\ud800", "\udfff", "é", "ß", "中", "𝔁", "😀", "👩\u200d👩\u200d👧", "\U0010ffff",
    "import torch\n", "import tensorflow as tf\n", "import jax\n", "torch.", ".detach()", ".data", ".item()",
    ".numpy()", "requires_grad=True", "with torch.no_grad():\n", "def f(x):\n", "class M(nn.Module):\n",
    "return ", "loss.backward()\n", "# noqa: GT105", "# noqa", "nn.Parameter(", "torch.tensor(", "lambda: ",
    "tape.gradient(", "jax.grad(", "optimizer.step()\n", "async ", "await ", "yield ", "self.", "=", "+=",
]
EDIT_KINDS = ["insert", "insert", "insert", "delete", "replace", "truncate", "bytes", "deep", "long_line",
              "line_endings", "non_bmp", "duplicate", "whole"]


def fragment_text():
    return st.one_of(
        st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=12).map("".join),
        st.text(max_size=30),
        st.text(st.characters(codec="utf-8", categories=["Lu", "Ll", "Nd", "Po", "Ps", "Pe", "Zs", "Cc", "So"]),
                max_size=30),
    )


def deep_text(data) -> str:
    n = data.draw(st.sampled_from([50, 199, 201, 500, 1000, 5000, 10000]), label="depth")
    shape = data.draw(st.sampled_from(["parens", "lists", "calls", "binop", "subscript", "lambda", "unary"]))
    return {
        "parens": "x = " + "(" * n + "w" + ")" * n + "\n",
        "lists": "x = " + "[" * n + "]" * n + "\n",
        "calls": "y = w.detach()" + ".a()" * n + "\n",
        "binop": "y = " + " + ".join(["w"] * n) + "\n",
        "subscript": "y = w" + "[0]" * n + "\n",
        "lambda": "f = " + "lambda: " * n + "w\n",
        "unary": "y = " + "-" * n + "w\n",
    }[shape]


def long_line(data) -> str:
    unit = data.draw(st.sampled_from(["a", "w.detach() + ", "😀", "é", "(1, ", "# comment ", "'s' "]))
    return "x = " + unit * (10_000 // len(unit) + 1) + "\n"


def mutate(data, text: str, enc: str, incremental: bool):
    """One edit of `text`: (new text, the didChange content change describing it)."""
    kind = data.draw(st.sampled_from(EDIT_KINDS), label="edit")
    STATS[f"edit:{kind}"] += 1
    n = len(text)
    a = data.draw(st.integers(0, n), label="start")
    b = data.draw(st.integers(a, min(n, a + data.draw(st.sampled_from([0, 1, 5, 40, 400, n])))), label="end")
    if kind == "truncate":
        return text[:a], None
    if kind == "whole":
        return data.draw(st.sampled_from(FIXTURES)), None
    if kind == "line_endings":
        ending = data.draw(st.sampled_from(["\r\n", "\r", "\n"]))
        every = data.draw(st.integers(1, 4))
        parts = text.split("\n")
        new = parts[0]
        for i, part in enumerate(parts[1:]):
            new += (ending if i % every == 0 else "\n") + part
        return new, None
    if kind == "insert":
        new_piece, b = data.draw(fragment_text(), label="text"), a
    elif kind == "delete":
        new_piece = ""
    elif kind == "replace":
        new_piece = data.draw(fragment_text(), label="text")
    elif kind == "bytes":
        raw = data.draw(st.binary(min_size=1, max_size=200), label="bytes")
        new_piece = raw.decode(data.draw(st.sampled_from(["latin-1", "utf-8"])), "replace")
    elif kind == "deep":
        new_piece, b = deep_text(data), a
    elif kind == "long_line":
        new_piece, b = long_line(data), a
    elif kind == "non_bmp":
        new_piece = data.draw(st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),
                                      min_size=1, max_size=8), label="astral")
    else:  # duplicate
        new_piece, b = text[a:b], a
    if 0 < a < n and text[a - 1] == "\r" and text[a] == "\n":
        a -= 1  # an LSP position cannot point between \r and \n
    if 0 < b < n and text[b - 1] == "\r" and text[b] == "\n":
        b -= 1
    b = max(a, b)
    new = text[:a] + new_piece + text[b:]
    if not incremental:
        return new, None
    rng = types.Range(start=position_at(text, a, enc), end=position_at(text, b, enc))
    return new, types.TextDocumentContentChangePartial(range=rng, text=new_piece)


def random_position(data, text: str, enc: str) -> types.Position:
    if data.draw(st.integers(0, 9), label="wild") == 0:  # out of range: the server must still answer
        lines = lsp_lines(text)
        return types.Position(line=data.draw(st.integers(0, len(lines) + 5)),
                              character=data.draw(st.sampled_from([0, 10_000, 2**31 - 1])))
    return position_at(text, data.draw(st.integers(0, len(text))), enc)


class Checker:
    """Collects every problem of one example; the example fails if there is any."""

    def __init__(self, server: LiveServer, uri: str):
        self.server, self.uri, self.enc = server, uri, server.encoding
        self.problems: list[str] = []

    def range(self, rng: types.Range, text: str, what: str):
        problem = range_problem(lsp_lines(text), rng, self.enc)
        if problem:
            shown = text if len(text) < 400 else text[:200] + " ... " + text[-200:]
            self.problems.append(f"{what}: {problem} (range {rng}) in {shown!r}")

    def diagnostics(self, diags, text: str, what: str):
        STATS["diagnostics checked"] += len(diags)
        for d in diags:
            self.range(d.range, text, f"{what} {d.code}")
            for info in d.related_information or []:
                if info.location.uri == self.uri:
                    self.range(info.location.range, text, f"{what} {d.code} related")

    def edit(self, edit: types.WorkspaceEdit | None, text: str, what: str):
        if edit is None:
            return
        edits = list((edit.changes or {}).get(self.uri, []))
        for dc in edit.document_changes or []:
            if isinstance(dc, types.TextDocumentEdit) and dc.text_document.uri == self.uri:
                edits += dc.edits
        spans = []
        for e in edits:
            self.range(e.range, text, f"{what} edit")
            if range_problem(lsp_lines(text), e.range, self.enc) is None:
                lines = lsp_lines(text)
                spans.append((offset_of(text, lines, e.range.start, self.enc),
                              offset_of(text, lines, e.range.end, self.enc)))
        spans.sort()
        for (s1, e1), (s2, e2) in itertools.pairwise(spans):
            if s2 < e1:
                self.problems.append(f"{what}: overlapping edits {s1}-{e1} and {s2}-{e2}")


async def ask(check: Checker, what: str, coro):
    """Await a request: it must be answered in time and not with an error."""
    STATS[f"request:{what}"] += 1
    try:
        return await asyncio.wait_for(coro, REQUEST_TIMEOUT)
    except JsonRpcException as exc:
        check.problems.append(f"{what} answered with an error: {exc!r}")
    except asyncio.TimeoutError:
        check.problems.append(f"{what} not answered within {REQUEST_TIMEOUT:.0f} s")
    return None


async def hover_and_actions(server: LiveServer, check: Checker, text: str, positions, ranges, context):
    client, uri, enc = server.client, check.uri, check.enc
    doc = types.TextDocumentIdentifier(uri=uri)
    hovers = [ask(check, "hover", client.text_document_hover_async(types.HoverParams(text_document=doc, position=p)))
              for p in positions]
    actions = [ask(check, "codeAction", client.text_document_code_action_async(types.CodeActionParams(
        text_document=doc, range=r, context=types.CodeActionContext(diagnostics=context))))
        for r in ranges]
    results = await asyncio.gather(*hovers, *actions)
    for hover in results[: len(hovers)]:
        if hover is not None and hover.range is not None:
            check.range(hover.range, text, "hover")
    for answer in results[len(hovers):]:
        for action in answer or []:
            if not isinstance(action, types.CodeAction):
                continue
            STATS["code actions checked"] += 1
            check.diagnostics(action.diagnostics or [], text, "code action diagnostic")
            edit = action.edit
            if edit is None and action.data is not None and server.pull:
                resolved = await ask(check, "codeAction/resolve", client.code_action_resolve_async(action))
                edit = resolved.edit if resolved is not None else None
            check.edit(edit, text, f"code action {action.title!r}")
    del enc


async def final_diagnostics(server: LiveServer, check: Checker, version: int, text: str):
    client, uri = server.client, check.uri
    if server.pull:
        report = await ask(check, "diagnostic", client.text_document_diagnostic_async(
            types.DocumentDiagnosticParams(text_document=types.TextDocumentIdentifier(uri=uri))))
        return list(report.items) if report is not None and getattr(report, "items", None) is not None else []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REQUEST_TIMEOUT
    while loop.time() < deadline:
        for params in reversed(client.published):
            if params.uri == uri and params.version == version:
                return list(params.diagnostics)
        await asyncio.sleep(0.01)
    check.problems.append(f"no diagnostics published for the last version ({version}) within {REQUEST_TIMEOUT:.0f} s")
    return []


def plan_document(data, enc: str) -> dict:
    """Draw one document's whole life (drawing must happen on the test's thread)."""
    start = data.draw(st.sampled_from(["fixture"] * 6 + ["empty", "fragments"]), label="start")
    text = {"fixture": lambda: data.draw(st.sampled_from(FIXTURES)), "empty": lambda: "",
            "fragments": lambda: data.draw(fragment_text())}[start]()
    plan = {"text": text, "steps": []}
    for _ in range(data.draw(st.integers(1, 6), label="steps")):
        changes = []
        for _ in range(data.draw(st.integers(1, 3), label="changes in one didChange")):
            incremental = data.draw(st.integers(0, 3), label="incremental") > 0
            text, change = mutate(data, text, enc, incremental)
            changes.append(change or types.TextDocumentContentChangeWholeDocument(text=text))
        positions, ranges = [], []
        if data.draw(st.integers(0, 2), label="ask now") > 0:  # else a burst of changes without requests
            positions = [random_position(data, text, enc) for _ in range(data.draw(st.integers(0, 3)))]
            for _ in range(data.draw(st.integers(0, 2))):
                p, q = random_position(data, text, enc), random_position(data, text, enc)
                ranges.append(types.Range(start=min(p, q, key=lambda x: (x.line, x.character)),
                                          end=max(p, q, key=lambda x: (x.line, x.character))))
        plan["steps"].append((changes, text, positions, ranges))
    return plan


async def one_document(server: LiveServer, plan: dict, uri: str) -> list[str]:
    client, enc = server.client, server.encoding
    check = Checker(server, uri)
    text = plan["text"]
    versions = {1: text}
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    STATS["documents"] += 1
    version = 1
    for changes, text, positions, ranges in plan["steps"]:
        version += 1
        versions[version] = text
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version), content_changes=changes))
        STATS["didChange"] += 1
        if positions or ranges:
            await hover_and_actions(server, check, text, positions, ranges, [])
    t0 = time.monotonic()
    diags = await final_diagnostics(server, check, version, text)
    STATS["ms waiting for final diagnostics"] += int(1000 * (time.monotonic() - t0))
    check.diagnostics(diags, text, f"v{version} diagnostic")
    # every diagnostic's quick fixes, a whole-document fixAll, and hovers on each finding
    whole = types.Range(start=types.Position(line=0, character=0), end=end_position(text, enc))
    await hover_and_actions(server, check, text, [d.range.start for d in diags[:5]],
                            [d.range for d in diags[:5]] + [whole], diags[:5])
    for params in client.published:  # every push for this document describes the version it names
        if params.uri == uri and params.version in versions:
            check.diagnostics(params.diagnostics, versions[params.version], f"published v{params.version}")
    client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
    client.published[:] = [p for p in client.published if p.uri != uri]  # keep the client's memory flat
    client.diagnostics.pop(uri, None)
    return check.problems


@pytest.fixture(scope="module", params=list(SESSIONS))
def session(request, tmp_path_factory):
    pull, encodings, share = SESSIONS[request.param]
    server = LiveServer(pull=pull, encodings=encodings).start()
    assert server.encoding == encodings[0]
    folder = tmp_path_factory.mktemp(request.param)
    yield server, folder, max(1, round(TOTAL * share))
    code = server.close()
    assert code == 0, f"server exited with {code}: {''.join(server.stderr)[-3000:]}"


def test_fuzz_documents_through_a_real_session(session):
    server, folder, examples = session
    counter = itertools.count()
    failures: list[str] = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=not LONG,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(st.data())
    def fuzz(data):
        uri = (folder / f"doc_{next(counter)}.py").as_uri()
        problems = server.run(one_document(server, plan_document(data, server.encoding), uri), timeout=300)
        assert server.returncode is None, f"server died: {''.join(server.stderr)[-3000:]}"
        crashes = server.problems()
        assert not crashes, crashes[:3]
        assert not problems, problems[:5]

    before, began = STATS["documents"], time.monotonic()
    try:
        fuzz()
    except Exception as exc:
        failures.append(repr(exc))
        raise
    finally:
        done = STATS["documents"] - before
        summary = {**{k: v for k, v in sorted(STATS.items())}, "session": "pull" if server.pull else "push",
                   "encoding": server.encoding, "documents": done, "seconds": round(time.monotonic() - began, 1)}
        print(json.dumps(summary, indent=1))
        report = os.environ.get("GRADTRACE_FUZZ_REPORT")
        if report:
            with open(report, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({**summary, "failures": failures}) + "\n")
    assert done >= examples, f"only {done} of {examples} documents were generated"
