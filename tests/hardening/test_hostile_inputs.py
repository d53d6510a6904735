"""Hostile inputs, each of which once took the server down, hung it or `gradtrace check`, or misled a
terminal: every one is answered (a result or a JSON-RPC error), bounded, and leaves the server serving.

- messages: JSON nested 100,000 deep, `Content-Length: 99999999999999`, a didChange whose `uri` is null,
  a number or a list, requests before `initialize` (-32002), `gradtrace.probe` with bad arguments (a clean
  -32602, no traceback), code actions for diagnostics whose `data` is not what the server sent (-32602),
  a cancel for a request already answered (nothing logged);
- files: a hover on `file:///dev/zero` or on a FIFO that is not open; `gradtrace check` on a directory
  holding a FIFO `x.py`, a symlink `z.py -> /dev/zero` or a FIFO `.gitignore`; a file name with terminal
  escapes in the text output;
- size: a 2 MB single-line document edited keystroke by keystroke.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from tests.hardening.harness import DETACH, RawServer, diagnostics_for, open_detach, still_works
from tests.lsp.helpers import SERVER_ENV

INVALID_REQUEST, INVALID_PARAMS, PARSE_ERROR, NOT_INITIALIZED = -32600, -32602, -32700, -32002
CHECK_TIMEOUT = 60  # seconds; a hang is what the FIFO attacks caused


@pytest.fixture
def quiet(raw):
    """`raw`, and not a traceback in its log either (errors answered on purpose are not crashes)."""
    yield raw
    log = raw.stderr.decode("utf-8", "replace")
    assert "Traceback" not in log, log[-3000:]


# ---- messages ------------------------------------------------------------------------------------


def test_json_nested_100000_deep_is_a_parse_error(raw, tmp_path):
    raw.send('{"jsonrpc":"2.0","id":7,"method":"textDocument/hover","params":' + "[" * 100_000 + "]" * 100_000 + "}")
    error = raw.wait_for(lambda m: m.get("error", {}).get("code") == PARSE_ERROR, 20, "a parse error")
    assert error["id"] is None and "nested too deeply" in error["error"]["message"]
    still_works(raw, tmp_path)


def test_a_huge_content_length_is_refused_without_allocating_it(raw, tmp_path):
    raw.send(b"Content-Length: 99999999999999\r\n\r\n{}", framed=False)
    error = raw.wait_for(lambda m: m.get("error", {}).get("code") == INVALID_REQUEST, 20, "an invalid request error")
    assert "99999999999999 bytes" in error["error"]["message"]
    raw.send(b"\r\n", framed=False)
    still_works(raw, tmp_path)


@pytest.mark.parametrize("uri", [None, 5, ["file:///a.py"], {"uri": "file:///a.py"}])
def test_a_did_change_whose_uri_is_not_a_string_is_dropped(raw, tmp_path, uri):
    raw.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                          "contentChanges": [{"text": "x = 1\n"}]})
    still_works(raw, tmp_path)


def test_requests_before_initialize_get_server_not_initialized(tmp_path):
    server = RawServer()
    try:
        hover = server.call("textDocument/hover", {"textDocument": {"uri": (tmp_path / "a.py").as_uri()},
                                                   "position": {"line": 0, "character": 0}})
        assert hover["error"]["code"] == NOT_INITIALIZED
        command = server.call("workspace/executeCommand", {"command": "gradtrace.showRuleDocs", "arguments": []})
        assert command["error"]["code"] == NOT_INITIALIZED
        server.notify("textDocument/didOpen", {"textDocument": {"uri": (tmp_path / "early.py").as_uri(),
                                                                "languageId": "python", "version": 1, "text": DETACH}})
        server.initialize()  # then everything works
        still_works(server, tmp_path)
        assert server.close() == 0
    finally:
        if server.alive():
            server.proc.kill()


@pytest.mark.parametrize("arguments", [[], [None], [5], [{"uri": 5}], [["file:///a.py"]], {"uri": "file:///a.py"},
                                       "file:///a.py"])
def test_probe_with_bad_arguments_is_a_clean_invalid_params(quiet, arguments):
    answer = quiet.call("workspace/executeCommand", {"command": "gradtrace.probe", "arguments": arguments})
    assert answer["error"]["code"] == INVALID_PARAMS, answer
    assert "traceback" not in json.dumps(answer).lower()


@pytest.mark.parametrize("data", [
    {"fix": "not a fix"},
    {"fix": {"title": 3, "safe": True, "edits": []}},
    {"fix": {"title": "t", "safe": True, "edits": [{"uri": 1}]}},
    {"fix": {"title": "t", "safe": True, "edits": [{"uri": "file:///a.py", "range": 5, "newText": "x"}]}},
    {"fix": {"title": "t", "safe": True, "edits": [{"uri": "file:///a.py", "newText": "x", "range": {
        "start": {"line": -1, "character": 0}, "end": {"line": 0, "character": "0"}}}]}},
])
def test_code_actions_for_diagnostics_with_foreign_data_are_invalid_params(quiet, tmp_path, data):
    raw = quiet
    uri = open_detach(raw, tmp_path / "actions.py")
    (diag,) = diagnostics_for(raw, uri, 1)
    diag["data"] = data
    answer = raw.call("textDocument/codeAction", {"textDocument": {"uri": uri}, "range": diag["range"],
                                                  "context": {"diagnostics": [diag]}})
    assert answer["error"]["code"] == INVALID_PARAMS, answer


def test_a_cancel_for_an_answered_request_is_not_an_error(quiet, tmp_path):
    raw = quiet
    uri = open_detach(raw, tmp_path / "cancel.py")
    (diag,) = diagnostics_for(raw, uri, 1)
    rid = raw.request("textDocument/hover", {"textDocument": {"uri": uri}, "position": diag["range"]["start"]})
    raw.response(rid)
    raw.notify("$/cancelRequest", {"id": rid})
    raw.notify("$/cancelRequest", {"id": "never-sent"})
    still_works(raw, tmp_path)
    log = raw.stderr.decode("utf-8", "replace")
    assert "Cancel notification for unknown message id" not in log, log


# ---- files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["device", "fifo"])
def test_a_hover_on_a_device_or_a_fifo_that_is_not_open(raw, tmp_path, target):
    if target == "device":
        uri = "file:///dev/zero"
    else:
        fifo = tmp_path / "pipe.py"
        os.mkfifo(fifo)
        uri = fifo.as_uri()
    answer = raw.call("textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}},
                      timeout=20)
    assert answer["result"] is None
    still_works(raw, tmp_path)


def run_check(*args: str, timeout: float = CHECK_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradtrace", "check", *args], capture_output=True, text=True,
                          env=SERVER_ENV, timeout=timeout)


@pytest.mark.parametrize("cache", [[], ["--no-cache"]])
def test_check_skips_a_fifo_and_a_symlink_to_a_device_with_gt001(tmp_path, cache):
    tree = tmp_path / "tree"
    tree.mkdir()
    os.mkfifo(tree / "x.py")
    os.symlink("/dev/zero", tree / "z.py")
    (tree / "train.py").write_text(DETACH, encoding="utf-8")
    proc = run_check(*cache, "--format", "json", str(tree))
    findings = {(os.path.basename(f["path"]), f["code"]): f["message"] for f in json.loads(proc.stdout)}
    assert findings.keys() == {("x.py", "GT001"), ("z.py", "GT001"), ("train.py", "GT105")}, proc.stderr
    assert "FIFO" in findings[("x.py", "GT001")] and "device" in findings[("z.py", "GT001")]


def test_check_walks_past_a_fifo_gitignore(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    os.mkfifo(tree / ".gitignore")
    (tree / "train.py").write_text(DETACH, encoding="utf-8")
    proc = run_check("--format", "json", str(tree))
    assert [f["code"] for f in json.loads(proc.stdout)] == ["GT105"], proc.stderr


def test_check_text_output_escapes_control_characters(tmp_path):
    name = "evil\x1b]0;owned\x07\x1b[31m\u202e.py"
    (tmp_path / name).write_text(DETACH, encoding="utf-8")
    proc = run_check("--no-cache", str(tmp_path))
    assert proc.returncode == 1
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202e]", proc.stdout), repr(proc.stdout)
    assert "evil\\x1b]0;owned\\x07\\x1b[31m\\u202e.py:7:" in proc.stdout


# ---- size ----------------------------------------------------------------------------------------


def test_keystrokes_on_a_two_megabyte_line_stay_cheap(raw, tmp_path):
    """pygls converted each edit's positions with a Python loop over the line: ~2 s a keystroke here, so
    40 keystrokes took over a minute. The answer to a request sent after them must come well before."""
    line = "x = '" + "😋" + "a" * 2_000_000 + "'"
    uri = (tmp_path / "long.py").as_uri()
    raw.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                         "text": line + "\n"}})
    end = len(line.encode("utf-16-le")) // 2 - 1
    start = time.monotonic()
    for version in range(2, 42):
        raw.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version}, "contentChanges": [
            {"range": {"start": {"line": 0, "character": end}, "end": {"line": 0, "character": end}}, "text": "b"}]})
        end += 1
    answer = raw.call("textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 3}},
                      timeout=30)
    assert "result" in answer
    assert time.monotonic() - start < 30
    diagnostics = diagnostics_for(raw, uri, 41, timeout=30)
    assert [d["code"] for d in diagnostics] == ["GT001"]  # over the live-analysis limit, said so
