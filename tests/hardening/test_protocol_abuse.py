"""Protocol abuse: the server process driven over bare pipes with malformed and hostile traffic.

Whatever a broken client sends, the server answers every request it can identify (a result or a
JSON-RPC error), stays up, and a later valid request still works.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.hardening.harness import DETACH, RawServer, diagnostics_for, frame, open_detach, still_works

METHOD_NOT_FOUND, INVALID_PARAMS, REQUEST_CANCELLED = -32601, -32602, -32800


def test_bad_json_and_non_objects(raw, tmp_path):
    for body in [b'{"jsonrpc": "2.0", "id": 5, "method": "textDocument/hover", "params": {', b"[1, 2, 3]",
                 b'"hello"', b"null", b"42", b"\xff\xfe\x00garbage", b"{}", b'{"jsonrpc": "2.0"}',
                 b'{"jsonrpc": "2.0", "id": 7}', b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "shutdown"}']:
        raw.send(frame(body), framed=False)
    still_works(raw, tmp_path)


@pytest.mark.parametrize("bad", [
    b"Content-Length: 5\r\n\r\n" + json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize"}).encode(),
    b"Content-Type: application/json\r\n\r\n{}",
    b"Content-Length: abc\r\n\r\n{}",
    b"\r\n\r\n\r\n",
    b"garbage without any header\n",
])
def test_wrong_content_length_and_headers(raw, tmp_path, bad):
    raw.send(bad, framed=False)
    still_works(raw, tmp_path)


def test_longer_content_length_swallows_only_what_it_claims(raw, tmp_path):
    """A frame claiming more bytes than it has eats the start of the next frame; later frames work."""
    hover = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "textDocument/hover",
                        "params": {"textDocument": {"uri": "file:///x.py"}, "position": {"line": 0, "character": 0}}})
    raw.send(b"Content-Length: 40\r\n\r\n{}", framed=False)
    raw.send(frame(hover), framed=False)  # partly swallowed by the frame above
    still_works(raw, tmp_path)


def test_invalid_params_get_an_invalid_params_error(raw, tmp_path):
    uri = open_detach(raw, tmp_path / "doc.py")
    diagnostics_for(raw, uri, 1)
    cases = [
        ("textDocument/hover", None),
        ("textDocument/hover", {"textDocument": 5}),
        ("textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": "x", "character": 0}}),
        ("textDocument/codeAction", {"textDocument": {"uri": uri}}),
        ("textDocument/diagnostic", []),
        ("codeAction/resolve", {"no": "title"}),
    ]
    for method, params in cases:
        answer = raw.call(method, params)
        assert answer.get("error", {}).get("code") == INVALID_PARAMS, (method, params, answer)
    still_works(raw, tmp_path)


def test_unknown_methods(raw, tmp_path):
    for method in ["foo/bar", "textDocument/doesNotExist", "$/customThing", ""]:
        answer = raw.call(method, {})
        assert answer["error"]["code"] == METHOD_NOT_FOUND, answer
    raw.notify("foo/bar", {"x": 1})  # unknown notifications are ignored
    raw.notify("$/setTrace", {"value": "verbose"})
    still_works(raw, tmp_path)


def test_unknown_and_odd_uris(raw, tmp_path):
    ghost = (tmp_path / "never_opened.py").as_uri()
    position = {"line": 0, "character": 0}
    whole = {"start": position, "end": {"line": 5, "character": 0}}
    for uri in [ghost, "untitled:Untitled-1", "file:///nonexistent/dir/x.py", "not a uri", "vscode-notebook-cell:x#1",
                "file:///" + "a" * 5000 + ".py"]:
        assert raw.call("textDocument/hover", {"textDocument": {"uri": uri}, "position": position})["result"] is None
        assert raw.call("textDocument/codeAction", {"textDocument": {"uri": uri}, "range": whole,
                                                    "context": {"diagnostics": []}})["result"] in (None, [])
        report = raw.call("textDocument/diagnostic", {"textDocument": {"uri": uri}})
        assert "error" not in report and report["result"]["items"] == []
    still_works(raw, tmp_path)


def test_document_sync_out_of_order(raw, tmp_path):
    ghost = (tmp_path / "ghost.py").as_uri()
    change = {"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "text": "x"}
    raw.notify("textDocument/didChange", {"textDocument": {"uri": ghost, "version": 2}, "contentChanges": [change]})
    raw.notify("textDocument/didSave", {"textDocument": {"uri": ghost}})
    raw.notify("textDocument/didClose", {"textDocument": {"uri": ghost}})
    uri = open_detach(raw, tmp_path / "twice.py")
    uri = open_detach(raw, tmp_path / "twice.py", version=5)  # opened twice
    first = raw.wait_for(lambda m: m.get("method") == "window/showMessage" or (
        m.get("method") == "textDocument/publishDiagnostics" and m["params"].get("version") == 5), what="diagnostics")
    assert first["method"] == "textDocument/publishDiagnostics", first  # no "Error in server" shown to the user
    assert first["params"]["diagnostics"][0]["code"] == "GT105"
    # a change whose range lies past the end of the document, then versions going backwards
    far = {"range": {"start": {"line": 10_000, "character": 3}, "end": {"line": 10_001, "character": 0}}, "text": "#"}
    raw.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 6}, "contentChanges": [far]})
    raw.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 3},
                                          "contentChanges": [{"text": "import torch\n"}]})
    assert diagnostics_for(raw, uri, 3) == []
    raw.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    raw.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    still_works(raw, tmp_path)


def test_out_of_range_positions(raw, tmp_path):
    uri = open_detach(raw, tmp_path / "doc.py")
    diagnostics_for(raw, uri, 1)
    for line, character in [(10**6, 0), (0, 10**6), (2**31 - 1, 2**31 - 1), (6, 45), (9, 10)]:
        position = {"line": line, "character": character}
        answer = raw.call("textDocument/hover", {"textDocument": {"uri": uri}, "position": position})
        assert "error" not in answer, answer
        answer = raw.call("textDocument/codeAction", {"textDocument": {"uri": uri},
                                                      "range": {"start": {"line": 0, "character": 0}, "end": position},
                                                      "context": {"diagnostics": []}})
        assert "error" not in answer, answer
    for bad in [{"line": -1, "character": 0}, {"line": 0, "character": -5}, {"line": 2**40, "character": 0}]:
        answer = raw.call("textDocument/hover", {"textDocument": {"uri": uri}, "position": bad})
        assert answer.get("error", {}).get("code") == INVALID_PARAMS, answer
    still_works(raw, tmp_path)


def test_cancellation_storm(raw, tmp_path):
    uri = open_detach(raw, tmp_path / "doc.py")
    (diag,) = diagnostics_for(raw, uri, 1)
    params = {"textDocument": {"uri": uri}, "position": diag["range"]["start"]}
    ids = []
    for i in range(300):
        rid = raw.request("textDocument/hover", params)
        ids.append(rid)
        raw.notify("$/cancelRequest", {"id": rid})
        raw.notify("$/cancelRequest", {"id": 10**9 + i})  # ids that never existed
        raw.notify("$/cancelRequest", {"id": f"nope-{i}"})
        if i % 10 == 0:
            cid = raw.request("textDocument/codeAction", {"textDocument": {"uri": uri}, "range": diag["range"],
                                                          "context": {"diagnostics": [diag]}})
            ids.append(cid)
            raw.notify("$/cancelRequest", {"id": cid})
    answered = {}
    for rid in ids:
        answer = raw.response(rid)
        assert "result" in answer or answer["error"]["code"] == REQUEST_CANCELLED, answer
        answered[rid] = answer
    assert len(answered) == len(ids)
    still_works(raw, tmp_path)


def test_a_client_that_stops_reading(raw, tmp_path):
    """The client stops reading while it floods requests and edits: the server blocks on its full
    output pipe (its memory stays bounded), does not die, and once the client reads again every
    request is answered."""
    uri = open_detach(raw, tmp_path / "doc.py")
    (diag,) = diagnostics_for(raw, uri, 1)
    raw.reading.clear()
    time.sleep(0.2)
    params = {"textDocument": {"uri": uri}, "position": diag["range"]["start"]}
    ids = [raw.request("textDocument/hover", params, send=False) for _ in range(2000)]

    def flood():  # several hundred KB each way: far beyond a pipe's buffer
        for n, rid in enumerate(ids):
            if n % 5 == 0:
                raw.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2 + n // 5},
                                                      "contentChanges": [{"text": DETACH + f"# edit {n}\n"}]})
            raw.send({"jsonrpc": "2.0", "id": rid, "method": "textDocument/hover", "params": params})

    writer = threading.Thread(target=flood, daemon=True)
    writer.start()
    time.sleep(3.0)
    assert raw.alive()
    rss_mb = int(open(f"/proc/{raw.proc.pid}/status").read().split("VmRSS:")[1].split()[0]) / 1024
    assert rss_mb < 400, f"{rss_mb:.0f} MB while blocked"
    raw.reading.set()
    writer.join(60)
    assert not writer.is_alive(), "the server never read its input again"
    for rid in ids:
        assert "GT105" in raw.response(rid, timeout=60)["result"]["contents"]["value"]
    assert diagnostics_for(raw, uri, 2 + 1999 // 5, timeout=60)[0]["code"] == "GT105"
    still_works(raw, tmp_path)


def test_client_disappears_without_shutdown(tmp_path):
    """Closing the pipe ends the server (no orphan process), and promptly."""
    server = RawServer()
    server.initialize()
    open_detach(server, tmp_path / "doc.py")
    server.proc.stdin.close()
    try:
        code = server.proc.wait(15)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(5)
    assert code is not None


def test_requests_after_shutdown_get_an_error(tmp_path):
    server = RawServer()
    server.initialize()
    assert server.call("shutdown")["result"] is None
    answer = server.call("textDocument/hover", {"textDocument": {"uri": (tmp_path / "x.py").as_uri()},
                                                "position": {"line": 0, "character": 0}})
    assert answer["error"]["code"] == -32600
    server.notify("exit")
    assert server.proc.wait(15) == 0


def test_exit_without_shutdown_exits_with_an_error_code():
    server = RawServer()
    server.initialize()
    server.notify("exit")
    assert server.proc.wait(15) == 1


@pytest.mark.parametrize("separator", ["\x0c", "\x0b", "\x1c", "\x85", "\u2028", "\u2029"])
def test_incremental_edits_below_characters_python_does_not_break_lines_at(raw, tmp_path, separator):
    """LSP and Python end lines at \\n, \\r\\n and \\r only; an edit below a form feed (or NEL, or
    U+2028...) in a comment must land on the line the editor meant."""
    text = f"# page one{separator}page two{separator}\n" + DETACH
    uri = open_detach(raw, tmp_path / "doc.py", text)
    (before,) = diagnostics_for(raw, uri, 1)
    assert before["range"]["start"]["line"] == 7
    # the editor replaces line 7 (0-based), the one with the detach, by the same line without it
    fixed = {"range": {"start": {"line": 7, "character": 0}, "end": {"line": 8, "character": 0}},
             "text": 'label, feats = "x", encoder(x)\n'}
    raw.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [fixed]})
    assert diagnostics_for(raw, uri, 2) == []
    # and a detach inserted below it is found on its own line
    insert = {"range": {"start": {"line": 8, "character": 0}, "end": {"line": 8, "character": 0}},
              "text": "feats = feats.detach()\n"}
    raw.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 3}, "contentChanges": [insert]})
    (after,) = diagnostics_for(raw, uri, 3)
    assert after["code"] == "GT105" and after["range"]["start"]["line"] == 8


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_lone_surrogates_in_every_position_encoding(tmp_path, encoding):
    """JSON can carry a lone surrogate ("\\ud800"); no position conversion may fail on one."""
    server = RawServer()
    try:
        init = server.call("initialize", {"processId": None, "rootUri": None,
                                          "capabilities": {"general": {"positionEncodings": [encoding]}}})
        assert init["result"]["capabilities"]["positionEncoding"] == encoding
        server.notify("initialized", {})
        uri = open_detach(server, tmp_path / "doc.py", "x = '\ud800\udfff\ud800'  # é😀\n" + DETACH)
        change = {"range": {"start": {"line": 0, "character": 6}, "end": {"line": 0, "character": 6}}, "text": "\udc00"}
        server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [change]})
        diagnostics_for(server, uri, 2)
        for character in range(0, 30):
            for method, params in [
                ("textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 0, "character": character}}),
                ("textDocument/codeAction", {"textDocument": {"uri": uri}, "context": {"diagnostics": []},
                                             "range": {"start": {"line": 0, "character": 0},
                                                       "end": {"line": 0, "character": character}}}),
            ]:
                answer = server.call(method, params)
                assert "error" not in answer, (method, character, answer)
    finally:
        server.close()
