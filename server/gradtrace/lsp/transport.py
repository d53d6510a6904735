"""The stdio message loop: pygls's, made robust against a misbehaving client.

pygls 2.1's loop (`pygls.io_.run_async`) recognises a header only when a line is exactly
`Content-Length: N\\r\\n`; after one frame with a wrong length or a bad header, every later header
is glued to the previous body and the server never reads another message. And a message it cannot
parse or structure is only logged, so the client's request is never answered. Here:
- a `Content-Length` header is found anywhere in a line, so the stream resynchronises;
- document lines end only where LSP says they do (pygls splits with `str.splitlines`, which also
  breaks at \\x0b, \\x0c, \\x1c-\\x1e, \\x85, \\u2028 and \\u2029: an incremental edit below a form
  feed then lands on the wrong line and the server's text silently differs from the editor's);
- a didChange for a document that is not open is dropped (pygls showed the user "Error in server:
  KeyError");
- a request after `shutdown` gets Invalid Request (pygls never answered it);
- finished notifications are forgotten (pygls kept every one's future: ~2 KB per didChange);
- bad JSON gets a Parse error (-32700), a non-object or a message without `jsonrpc: "2.0"` an
  Invalid Request (-32600), a request whose params do not fit its method Invalid params (-32602);
- JSON nested deeper than Python's parser goes is a Parse error (pygls died of RecursionError);
- a header announcing more than `MAX_MESSAGE_BYTES` is refused without reading the body into memory
  (pygls tried to allocate it: MemoryError), and header lines are read in bounded pieces;
- a didChange whose `uri` is not a string is dropped (pygls died of TypeError);
- a request before `initialize` gets Server not initialized (-32002), as LSP asks; other notifications
  than `exit` before it are dropped;
- a document that is not open (a hover on any URI) is read through the guarded reader: regular files
  only, size bounded (pygls read `file:///dev/zero` until the memory ran out, and waited on a FIFO forever).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from threading import Event
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.io_ import StdinAsyncReader, StdoutWriter
from pygls.workspace.position_codec import PositionCodec, ServerTextPosition
from pygls.workspace.text_document import TextDocument

from gradtrace.guarded_files import UnreadableFile, read_text
from gradtrace.positions import char_col_to_unit, unit_length, unit_to_char_col

logger = logging.getLogger(__name__)
HEADER = re.compile(rb"Content-Length:[ \t]*(\d+)[ \t]*\r?\n$", re.I)
PARSE_ERROR, INVALID_REQUEST, NOT_INITIALIZED = -32700, -32600, -32002
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # a didOpen of the largest document an editor holds is far below
MAX_HEADER_LINE = 64 * 1024
BEFORE_INITIALIZE = ("initialize", "exit")
MAX_UNOPENED_BYTES = 4 * 1024 * 1024  # a file hovered without being open  # the only messages that make sense before `initialize`
LSP_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def _lsp_lines(self: TextDocument) -> tuple[str, ...]:
    return tuple(LSP_LINES.findall(self.source))


def _guarded_source(self: TextDocument) -> str:
    """An open document's text; for one that is not open, the file on disk if it is a readable regular
    UTF-8 file of at most `MAX_UNOPENED_BYTES`, else nothing."""
    if self._source is None and self.path is not None:
        try:
            return read_text(self.path, MAX_UNOPENED_BYTES)
        except (UnreadableFile, UnicodeDecodeError, ValueError):
            return ""
    return self._source or ""


def _position_from_client_units(self: PositionCodec, lines, position: types.Position) -> ServerTextPosition:
    """pygls's conversion (same results, a column inside a character rounds up), in C-speed steps."""
    if len(lines) == 0:
        return ServerTextPosition(0, 0)
    if position.line >= len(lines):
        return ServerTextPosition(len(lines) - 1, unit_length(lines[-1], _encoding(self)))
    line = lines[position.line]
    if "\r" in line:
        line = line.replace("\r\n", "\n")
    encoding = _encoding(self)
    length = unit_length(line, encoding)
    if length == 0:
        return ServerTextPosition(position.line, 0)
    character = length - 1 if position.character > length else position.character
    column = unit_to_char_col(line, character, encoding)
    if char_col_to_unit(line, column, encoding) < character:
        column += 1  # inside a character: the column after it, as pygls counts
    return ServerTextPosition(position.line, min(column, len(line)))


def _position_to_client_units(self: PositionCodec, lines, position) -> types.Position:
    try:
        line = lines[position.line]
    except IndexError:
        return types.Position(line=len(lines), character=0)
    return types.Position(line=position.line, character=char_col_to_unit(line, position.character, _encoding(self)))


def _encoding(codec: PositionCodec) -> str:
    return str(getattr(codec.encoding, "value", codec.encoding) or "utf-16")


def patch_text_documents() -> None:
    """pygls's `TextDocument` with LSP's line breaks, the guarded reader for unopened files, and position
    conversions that stay linear in C (pygls looped over every character in Python: ~2 s per keystroke
    on a 2 MB line)."""
    TextDocument.lines = property(_lsp_lines)
    TextDocument.source = property(_guarded_source)
    PositionCodec.position_from_client_units = _position_from_client_units
    PositionCodec.position_to_client_units = _position_to_client_units
    PositionCodec.client_num_units = lambda self, string: unit_length(string, _encoding(self))


def _error(protocol, msg_id, code: int, message: str) -> None:
    protocol._send_data({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})


def _is_open(protocol, params) -> bool | None:
    """Whether a didChange's document is open; None when its `uri` is not even a string."""
    try:
        uri = params["textDocument"]["uri"]
        documents = protocol._workspace.text_documents
    except (TypeError, KeyError, AttributeError):
        return True  # malformed otherwise: pygls's structuring rejects it
    if not isinstance(uri, str):
        return None
    return unquote(uri) in documents


def handle_body(protocol, body: bytes, error_handler=None) -> None:
    try:
        data = json.loads(body)
    except ValueError as exc:
        _error(protocol, None, PARSE_ERROR, f"Parse error: {exc}")
        return
    except RecursionError:
        _error(protocol, None, PARSE_ERROR, "Parse error: the JSON is nested too deeply")
        return
    msg_id = data.get("id") if isinstance(data, dict) else None
    valid_id = msg_id is None or (isinstance(msg_id, (int, str)) and not isinstance(msg_id, bool))
    if not valid_id:
        msg_id = None
    if not isinstance(data, dict) or data.get("jsonrpc") != "2.0" or not valid_id \
            or not isinstance(data.get("method", ""), str) or ("method" not in data and "id" not in data):
        _error(protocol, msg_id, INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message")
        return
    is_request = "method" in data and msg_id is not None
    method = data.get("method")
    if method == "initialize":
        protocol.gradtrace_initialized = True
    elif method is not None and not getattr(protocol, "gradtrace_initialized", False) \
            and method not in BEFORE_INITIALIZE:
        if is_request:
            _error(protocol, msg_id, NOT_INITIALIZED, f"Server not initialized: {method} before initialize")
        return
    if is_request and getattr(protocol, "_shutdown", False):  # pygls left these unanswered
        _error(protocol, msg_id, INVALID_REQUEST, "Invalid Request: the server is shutting down")
        return
    if method == "textDocument/didChange" and not _is_open(protocol, data.get("params")):
        logger.warning("Dropped a didChange for a document that is not open (or a uri that is not a string)")
        return
    if method == "workspace/executeCommand" and is_request and not _arguments_ok(data.get("params")):
        _error(protocol, msg_id, JsonRpcInvalidParams.CODE, "Invalid params: `arguments` must be an array")
        return
    try:
        message = json.loads(body, object_hook=protocol.structure_message)
    except JsonRpcException as exc:
        if is_request:
            code = JsonRpcInvalidParams.CODE if isinstance(exc, JsonRpcInvalidParams) else exc.code
            _error(protocol, msg_id, code, f"{exc.message or type(exc).__name__}: params do not fit {data['method']}")
        else:
            logger.warning("Dropped a malformed message (method %r)", data.get("method"))
        return
    except Exception as exc:
        if is_request:
            _error(protocol, msg_id, -32603, f"Internal error: {type(exc).__name__}")
        return
    try:
        protocol.handle_message(message)
    except Exception as exc:
        logger.exception("Unable to handle message")
        if error_handler:
            error_handler(exc, JsonRpcException)
    if not is_request:
        _forget_finished_notifications(protocol)


def _arguments_ok(params) -> bool:
    return not isinstance(params, dict) or isinstance(params.get("arguments"), (list, type(None)))


def _forget_finished_notifications(protocol) -> None:
    """pygls files every notification's future under a fresh uuid in `_request_futures` and never removes
    it (only request ids are popped): one entry per didChange, a steady memory leak. Drop the finished ones."""
    futures = getattr(protocol, "_request_futures", None)
    if not futures:
        return
    for key in [k for k, f in futures.items() if isinstance(k, str) and len(k) == 36 and k.count("-") == 4
                and f.done()]:
        futures.pop(key, None)


class BoundedStdinReader(StdinAsyncReader):
    """pygls's stdin reader, with header lines read in pieces of at most `MAX_HEADER_LINE` bytes (a body
    without line breaks, read as headers after a framing error, must not be held whole)."""

    def readline(self):
        return self.loop.run_in_executor(self.executor, self.stdin.readline, MAX_HEADER_LINE)


async def run_async(stop_event: Event, reader, protocol, error_handler=None) -> None:
    content_length = 0
    while not stop_event.is_set():
        header = await reader.readline()
        if not header:
            break
        match = HEADER.search(header)
        if match:
            content_length = int(match.group(1))
            if content_length > MAX_MESSAGE_BYTES:
                # not read: resynchronise on the next header instead of allocating what a header claims
                _error(protocol, None, INVALID_REQUEST, f"Invalid Request: a message of {content_length} bytes "
                                                       f"is over the {MAX_MESSAGE_BYTES} byte limit")
                content_length = 0
            continue
        if content_length and not header.strip():
            body = await reader.readexactly(content_length)
            content_length = 0
            if not body:
                break
            handle_body(protocol, body, error_handler)


def start_io(server) -> None:
    """`LanguageServer.start_io()` with the loop above."""
    patch_text_documents()
    server._stop_event = Event()
    reader = BoundedStdinReader(sys.stdin.buffer, server.thread_pool)
    server.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
    try:
        asyncio.run(run_async(server._stop_event, reader, server.protocol, server.report_server_error))
    except BrokenPipeError:
        logger.error("Connection to the client is lost! Shutting down the server.")
    except KeyboardInterrupt:
        pass  # SystemExit carries on: `exit` without `shutdown` exits with 1, as LSP asks
