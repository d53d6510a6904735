"""workspace/executeCommand `gradtrace.gradientMap`: the gradient map of a document, for the editor's webview.

Argument: the document URI (as `gradtrace.probe` takes it). Answer: `gradtrace.gradmap.payload` — the SVG, its
styles and click index, built from the last probe result of the file when there is one, else from the static
findings of the document's current text (labelled as such) — plus `generation`, which changes after each probe,
and `stale`, true when the document's text is no longer the text that probe ran on (the map says so too).
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from gradtrace.positions import split_lines

if TYPE_CHECKING:
    from gradtrace.lsp.server import GradtraceServer

GRADIENT_MAP = "gradtrace.gradientMap"


class GradientMapError(JsonRpcException):
    CODE = int(types.LSPErrorCodes.RequestFailed)


def _uri(args: tuple) -> str | None:
    if not args:
        return None
    value = args[0]
    if isinstance(value, dict):
        value = value.get("uri") or (value.get("textDocument") or {}).get("uri")
    return value if isinstance(value, str) else None


async def gradient_map(ls, *args):
    """The map of the document behind the URI argument."""
    uri = _uri(args)
    if not uri:
        raise JsonRpcInvalidParams(f"{GRADIENT_MAP} expects the document URI as its argument")
    docs = ls.documents
    path = docs.path_for(docs.target_key(uri))
    record = ls.probe.records.get(path) if os.path.isabs(path) else None
    result = record.result if record is not None else None
    try:
        text = ls.workspace.get_text_document(uri).source
    except Exception:
        text = None
    generation = ls.probe.generation(path)
    stale = record is not None and text is not None and record.stale_for(split_lines(text))

    def work() -> dict:
        from gradtrace import gradmap

        gm = gradmap.build(result, path=path, text=text)
        if stale and gm.source == "probe":
            gm.mark_stale()
        out = gradmap.payload(gm)
        out["generation"] = generation
        out["probed_at"] = record.when if record is not None else None
        return out

    try:
        return await asyncio.get_running_loop().run_in_executor(None, work)
    except Exception as exc:
        from gradtrace.gradmap import GraphvizMissing

        if isinstance(exc, GraphvizMissing):
            raise GradientMapError(f"gradtrace: {exc}") from exc
        ls.log(types.MessageType.Error, f"gradtrace gradient map for {path} failed: {exc!r}")
        raise GradientMapError(f"gradtrace: the gradient map failed: {type(exc).__name__}: {exc}") from exc


def register(server: GradtraceServer) -> None:
    server.command(GRADIENT_MAP)(gradient_map)
