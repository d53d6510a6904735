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
  Invalid Request (-32600), a request whose params do not fit its method Invalid params (-32602).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from threading import Event
from urllib.parse import unquote

from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.io_ import StdinAsyncReader, StdoutWriter
from pygls.workspace.text_document import TextDocument

logger = logging.getLogger(__name__)
HEADER = re.compile(rb"Content-Length:[ \t]*(\d+)[ \t]*\r?\n$", re.I)
PARSE_ERROR, INVALID_REQUEST = -32700, -32600
LSP_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def _lsp_lines(self: TextDocument) -> tuple[str, ...]:
    return tuple(LSP_LINES.findall(self.source))


def _error(protocol, msg_id, code: int, message: str) -> None:
    protocol._send_data({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})


def _is_open(protocol, params) -> bool:
    try:
        uri = params["textDocument"]["uri"]
        documents = protocol._workspace.text_documents
    except (TypeError, KeyError, AttributeError):
        return True  # malformed or before initialize: pygls answers as usual
    return unquote(uri) in documents


def handle_body(protocol, body: bytes, error_handler=None) -> None:
    try:
        data = json.loads(body)
    except ValueError as exc:
        _error(protocol, None, PARSE_ERROR, f"Parse error: {exc}")
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
    if is_request and getattr(protocol, "_shutdown", False):  # pygls left these unanswered
        _error(protocol, msg_id, INVALID_REQUEST, "Invalid Request: the server is shutting down")
        return
    if data.get("method") == "textDocument/didChange" and not _is_open(protocol, data.get("params")):
        logger.warning("Dropped a didChange for a document that is not open")  # pygls raised KeyError
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


def _forget_finished_notifications(protocol) -> None:
    """pygls files every notification's future under a fresh uuid in `_request_futures` and never removes
    it (only request ids are popped): one entry per didChange, a steady memory leak. Drop the finished ones."""
    futures = getattr(protocol, "_request_futures", None)
    if not futures:
        return
    for key in [k for k, f in futures.items() if isinstance(k, str) and len(k) == 36 and k.count("-") == 4
                and f.done()]:
        futures.pop(key, None)


async def run_async(stop_event: Event, reader, protocol, error_handler=None) -> None:
    content_length = 0
    while not stop_event.is_set():
        header = await reader.readline()
        if not header:
            break
        match = HEADER.search(header)
        if match:
            content_length = int(match.group(1))
            continue
        if content_length and not header.strip():
            body = await reader.readexactly(content_length)
            content_length = 0
            if not body:
                break
            handle_body(protocol, body, error_handler)


def start_io(server) -> None:
    """`LanguageServer.start_io()` with the loop above."""
    TextDocument.lines = property(_lsp_lines)
    server._stop_event = Event()
    reader = StdinAsyncReader(sys.stdin.buffer, server.thread_pool)
    server.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
    try:
        asyncio.run(run_async(server._stop_event, reader, server.protocol, server.report_server_error))
    except BrokenPipeError:
        logger.error("Connection to the client is lost! Shutting down the server.")
    except KeyboardInterrupt:
        pass  # SystemExit carries on: `exit` without `shutdown` exits with 1, as LSP asks
