"""Notifications must not pile up inside the server (pygls files each one's future and never drops it)."""

from __future__ import annotations

import json

from gradtrace.lsp import transport
from gradtrace.lsp.server import create_server


def frame(method: str, params: dict, msg_id: int | None = None) -> bytes:
    message = {"jsonrpc": "2.0", "method": method, "params": params}
    if msg_id is not None:
        message["id"] = msg_id
    return json.dumps(message).encode()


def test_handled_notifications_leave_nothing_behind():
    server = create_server()
    protocol = server.protocol
    sent = []
    protocol._send_data = sent.append  # no client on the other end of this test
    uri = "file:///tmp/notification_memory.py"
    transport.handle_body(protocol, frame("initialize", {"capabilities": {}}, msg_id=1))
    transport.handle_body(protocol, frame("initialized", {}))
    transport.handle_body(protocol, frame("textDocument/didOpen", {"textDocument": {
        "uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n"}}))
    for version in range(2, 302):
        transport.handle_body(protocol, frame("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": version},
            "contentChanges": [{"text": f"x = {version}\n"}]}))
    assert server.workspace.get_text_document(uri).source == "x = 301\n"
    leftovers = [k for k, f in protocol._request_futures.items() if f.done()]
    assert len(leftovers) < 5, f"{len(leftovers)} finished notification futures kept"
