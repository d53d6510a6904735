"""workspace/executeCommand: `gradtrace.probe` and `gradtrace.showRuleDocs`.

Arguments are accepted the ways clients send them: `["file:///x.py"]`, `[{"uri": "file:///x.py"}]`
(VS Code's `TextDocumentIdentifier`), and for the docs `["GT116"]` or `[{"code": "GT116"}]`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from gradtrace.rules import all_rules, get_rule

if TYPE_CHECKING:
    from gradtrace.lsp.server import GradtraceServer

PROBE = "gradtrace.probe"
SHOW_RULE_DOCS = "gradtrace.showRuleDocs"


def _first(args: tuple, *keys: str) -> str | None:
    if not args:
        return None
    value = args[0]
    if isinstance(value, dict):
        for key in keys:
            if isinstance(value.get(key), str):
                return value[key]
        nested = value.get("textDocument")
        if isinstance(nested, dict) and isinstance(nested.get("uri"), str):
            return nested["uri"]
        return None
    return value if isinstance(value, str) else None


async def probe(ls, *args):  # `ls` unannotated: pygls resolves command annotations at run time
    """Run the sandboxed probe on a document; returns the probe's JSON result."""
    uri = _first(args, "uri", "document")
    if not uri:
        raise JsonRpcInvalidParams(f"{PROBE} expects the document URI as its argument, e.g. [\"file:///train.py\"]")
    return await ls.probe.run(uri)


def show_rule_docs(ls, *args):
    """A rule's documentation (markdown), or the list of rules when no code is given."""
    code = _first(args, "code", "rule")
    if not code:
        return {"rules": [{"code": r.code, "name": r.name, "summary": r.summary, "severity": r.severity}
                          for r in all_rules()]}
    rule = get_rule(code)
    if rule is None:
        raise JsonRpcInvalidParams(f"no gradtrace rule {code!r}; `gradtrace rules` lists them")
    try:
        url = rule().url
    except Exception:
        url = None
    ls.log(types.MessageType.Log, f"{SHOW_RULE_DOCS} {rule.code}")
    return {"code": rule.code, "name": rule.name, "summary": rule.summary, "severity": rule.severity,
            "url": url, "markdown": rule.documentation()}


def register(server: GradtraceServer) -> None:
    server.command(PROBE)(probe)
    server.command(SHOW_RULE_DOCS)(show_rule_docs)
