"""Helpers for the hardening suites.

- An LSP document model that follows the protocol (lines end at \\n, \\r\\n or \\r only) and checks
  positions in the negotiated encoding, including "not inside a character".
- `LiveServer`: a real `gradtrace server` over stdio, driven by pytest-lsp's client on a background
  event loop, so that synchronous hypothesis tests can talk to one server for many examples.
- `RawServer`: the server process driven over bare pipes, for malformed bytes.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import subprocess
import threading
import time

from lsprotocol import types

from tests.lsp.helpers import DATA, SERVER_CMD, SERVER_ENV, make_client

DETACH = (DATA / "detach.py").read_text(encoding="utf-8")

LSP_BREAK = re.compile(r"\r\n|\r|\n")


def lsp_lines(text: str) -> list[str]:
    return LSP_BREAK.split(text)


def units(s: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(s.encode("utf-8", "surrogatepass"))
    if encoding == "utf-16":
        return len(s) + sum(1 for ch in s if ord(ch) > 0xFFFF)
    return len(s)


def unit_to_char(line: str, col: int, encoding: str) -> int | None:
    """Code-point column of `col` units on `line`, or None when `col` falls inside a character."""
    if encoding == "utf-32":
        return col if col <= len(line) else None
    count = 0
    for index, ch in enumerate(line):
        if count == col:
            return index
        if count > col:
            return None
        count += units(ch, encoding)
    return len(line) if count == col else None


def char_to_unit(line: str, char: int, encoding: str) -> int:
    return units(line[:char], encoding)


def position_problem(lines: list[str], pos: types.Position, encoding: str) -> str | None:
    if not (0 <= pos.line < len(lines)):
        return f"line {pos.line} outside 0..{len(lines) - 1}"
    line = lines[pos.line]
    if pos.character < 0 or unit_to_char(line, pos.character, encoding) is None:
        return f"character {pos.character} not a boundary of line {pos.line} ({units(line, encoding)} {encoding} units)"
    return None


def range_problem(lines: list[str], rng: types.Range, encoding: str) -> str | None:
    for which, pos in (("start", rng.start), ("end", rng.end)):
        problem = position_problem(lines, pos, encoding)
        if problem:
            return f"{which}: {problem}"
    if (rng.start.line, rng.start.character) > (rng.end.line, rng.end.character):
        return "start after end"
    return None


def offset_of(text: str, lines: list[str], pos: types.Position, encoding: str) -> int:
    """Code-point offset in `text` of a valid position."""
    starts = [0]
    for m in LSP_BREAK.finditer(text):
        starts.append(m.end())
    return starts[pos.line] + unit_to_char(lines[pos.line], pos.character, encoding)


def position_at(text: str, offset: int, encoding: str) -> types.Position:
    """The position of code-point `offset` (moved off the middle of a \\r\\n)."""
    if 0 < offset < len(text) and text[offset - 1] == "\r" and text[offset] == "\n":
        offset -= 1
    before = text[:offset]
    breaks = list(LSP_BREAK.finditer(before))
    line = len(breaks)
    start = breaks[-1].end() if breaks else 0
    return types.Position(line=line, character=units(before[start:], encoding))


def end_position(text: str, encoding: str) -> types.Position:
    lines = lsp_lines(text)
    return types.Position(line=len(lines) - 1, character=units(lines[-1], encoding))


# ---- capabilities --------------------------------------------------------------------------------


def capabilities(pull: bool, encodings: list[str]) -> types.ClientCapabilities:
    """A client that pulls (textDocument/diagnostic + refresh) or only receives pushed diagnostics."""
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(position_encodings=encodings),
        workspace=types.WorkspaceClientCapabilities(
            diagnostics=types.DiagnosticWorkspaceClientCapabilities(refresh_support=True) if pull else None,
            workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True),
        ),
        text_document=types.TextDocumentClientCapabilities(
            diagnostic=types.DiagnosticClientCapabilities(related_information=True) if pull else None,
            publish_diagnostics=types.PublishDiagnosticsClientCapabilities(related_information=True,
                                                                           version_support=True),
            hover=types.HoverClientCapabilities(content_format=[types.MarkupKind.Markdown]),
            code_action=types.CodeActionClientCapabilities(
                resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"]) if pull else None),
        ),
        window=types.WindowClientCapabilities(work_done_progress=True),
    )


# ---- a real server over stdio, for synchronous tests ----------------------------------------------


class LiveServer:
    """`gradtrace server` with pytest-lsp's client on a background event loop."""

    def __init__(self, pull: bool, encodings: list[str], init_options: dict | None = None):
        self.pull = pull
        self.offered = encodings
        self.init_options = init_options
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lsp-client", daemon=True)
        self.stderr: list[str] = []
        self.reported: set[int] = set()
        self.encoding = "utf-16"
        self.client = None

    def run(self, coro, timeout: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> LiveServer:
        self.thread.start()
        self.run(self._start())
        return self

    async def _start(self):
        self.client = make_client()
        await self.client.start_io(*SERVER_CMD, env=SERVER_ENV)
        if self.client._stderr_forwarder is not None:  # keep the server's stderr to check it
            self.client._stderr_forwarder.cancel()
        self._stderr_task = asyncio.create_task(self._read_stderr(self.client._server.stderr))
        result = await self.client.initialize_session(types.InitializeParams(
            capabilities=capabilities(self.pull, self.offered), initialization_options=self.init_options))
        enc = result.capabilities.position_encoding or "utf-16"
        self.encoding = str(getattr(enc, "value", enc))

    async def _read_stderr(self, stream):
        while True:
            line = await stream.readline()
            if not line:
                return
            self.stderr.append(line.decode("utf-8", "replace"))

    @property
    def returncode(self):
        return self.client._server.returncode

    @property
    def pid(self) -> int:
        return self.client._server.pid

    def close(self) -> int | None:
        try:
            self.run(self.client.shutdown_session(), timeout=30)
            code = self.returncode
        finally:
            async def stop():
                try:
                    await asyncio.wait_for(self.client.stop(), 10)
                except Exception:
                    pass
            try:
                self.run(stop(), timeout=15)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        return code

    def problems(self) -> list[str]:
        """Signs of a crash: tracebacks on stderr, handler errors or crashed rules in the log."""
        found = []
        for n, line in enumerate(self.stderr):
            if "Traceback" in line and n not in self.reported:
                self.reported.add(n)  # each traceback fails one example, with its text
                found.append("".join(self.stderr[max(0, n - 2):n + 40]))
        for m in self.client.log_messages:
            if m.type == types.MessageType.Error and any(w in m.message for w in ("Traceback", "crashed", "failed")):
                found.append(m.message)
        return found


# ---- bare pipes --------------------------------------------------------------------------------


def frame(payload: bytes | str | dict) -> bytes:
    if isinstance(payload, dict):
        payload = json.dumps(payload)
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return b"Content-Length: %d\r\n\r\n" % len(payload) + payload


class RawServer:
    """The server process on bare pipes: write any bytes, read framed messages from a reader thread."""

    def __init__(self):
        self.proc = subprocess.Popen(SERVER_CMD, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=SERVER_ENV, bufsize=0)
        self.messages: queue.Queue = queue.Queue()
        self.stderr = bytearray()
        self.reading = threading.Event()
        self.reading.set()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.next_id = 1000

    def _read(self):
        out = self.proc.stdout
        while True:
            self.reading.wait()
            header = b""
            while not header.endswith(b"\r\n\r\n"):
                ch = out.read(1)
                if not ch:
                    self.messages.put(None)
                    return
                header += ch
            length = int(re.search(rb"Content-Length: *(\d+)", header, re.I).group(1))
            body = b""
            while len(body) < length:
                chunk = out.read(length - len(body))
                if not chunk:
                    self.messages.put(None)
                    return
                body += chunk
            self.messages.put(json.loads(body))

    def _read_stderr(self):
        while True:
            chunk = self.proc.stderr.read(4096)
            if not chunk:
                return
            self.stderr += chunk

    def send(self, data: bytes | str | dict, framed: bool = True) -> None:
        if framed:
            data = frame(data)
        self.proc.stdin.write(data if isinstance(data, bytes) else data.encode())
        self.proc.stdin.flush()

    def request(self, method: str, params=None, send: bool = True) -> int:
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        if send:
            self.send(message)
        return self.next_id

    def notify(self, method: str, params=None) -> None:
        message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def wait_for(self, predicate, timeout: float = 20.0, what: str = "a message"):
        """The first message (answering server requests on the way) for which `predicate` holds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if message is None:
                raise AssertionError(f"server closed its output while waiting for {what}; "
                                     f"stderr: {self.stderr[-2000:].decode('utf-8', 'replace')}")
            if "method" in message and "id" in message:  # a request from the server: answer it
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            if predicate(message):
                return message

    def response(self, request_id, timeout: float = 20.0) -> dict:
        return self.wait_for(lambda m: m.get("id") == request_id and "method" not in m, timeout,
                             f"the response to request {request_id!r}")

    def call(self, method: str, params=None, timeout: float = 20.0) -> dict:
        return self.response(self.request(method, params), timeout)

    def initialize(self) -> dict:
        result = self.call("initialize", {"processId": os.getpid(), "rootUri": None, "capabilities": {}})
        self.notify("initialized", {})
        return result

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, timeout: float = 10.0) -> int | None:
        try:
            if self.alive():
                rid = self.request("shutdown")
                self.response(rid, timeout)
                self.notify("exit")
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                try:
                    stream.close()
                except OSError:
                    pass


# ---- a document with one known finding, to check that a server still serves ---------------------


def open_detach(raw: RawServer, path, text: str = DETACH, version: int = 1) -> str:
    uri = path.as_uri()
    raw.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": version,
                                                         "text": text}})
    return uri


def diagnostics_for(raw: RawServer, uri: str, version: int, timeout: float = 20.0) -> list:
    message = raw.wait_for(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                           and m["params"]["uri"] == uri and m["params"].get("version") == version,
                           timeout, f"diagnostics for {uri} v{version}")
    return message["params"]["diagnostics"]


def still_works(raw: RawServer, tmp_path, name: str = "after.py") -> None:
    """A later valid document gets its GT105 and a hover on it is answered."""
    uri = open_detach(raw, tmp_path / name)
    (diag,) = diagnostics_for(raw, uri, 1)
    assert diag["code"] == "GT105"
    hover = raw.call("textDocument/hover", {"textDocument": {"uri": uri}, "position": diag["range"]["start"]})
    assert "GT105" in hover["result"]["contents"]["value"]
