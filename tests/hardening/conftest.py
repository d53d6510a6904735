"""The hardening suites' shared fixture: a server on bare pipes that must survive each test."""

from __future__ import annotations

import re

import pytest

from tests.hardening.harness import RawServer


@pytest.fixture
def raw(tmp_path):
    """An initialised server on bare pipes; afterwards it must be alive, exit cleanly and have logged no crash."""
    server = RawServer()
    server.initialize()
    yield server
    assert server.alive(), f"the server died: {server.stderr[-3000:].decode('utf-8', 'replace')}"
    assert server.close() == 0
    # pygls logs the messages it cannot structure (answered with an error); a handler must never crash
    log = server.stderr.decode("utf-8", "replace")
    crash = re.search(r"Failed to handle (request|notification)[^\n]*\n\s*(\+ Exception Group )?Traceback"
                      r"|Exception occurred for message|Unable to handle message|Error in server", log)
    assert crash is None, log[max(0, crash.start() - 200):][:3000]
