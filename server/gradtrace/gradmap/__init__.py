"""The gradient map: a picture of which parameters train, which get nothing, and where the graph was cut.

    build(probe_result=None, path=None, text=None) -> GradMap   (probe result, else static findings)
    render_svg(gm) -> str          (Graphviz dot; see dot.py for why)
    render_html(gm) -> str         (one self-contained page: the SVG, theme CSS and a click-for-details script)
    payload(gm) -> dict            (what the editor's webview receives)
    write(gm, out_path)            (.svg or .html by the file's extension)
"""

from __future__ import annotations

import html
import json
import os

from gradtrace.gradmap.dot import GraphvizMissing, render_svg, to_dot
from gradtrace.gradmap.model import GradMap, from_probe, from_static

__all__ = ["GradMap", "GraphvizMissing", "build", "from_probe", "from_static", "payload", "render_html",
           "render_svg", "to_dot", "write"]


def build(probe_result: dict | None = None, path: str | None = None, text: str | None = None) -> GradMap:
    """From a probe result with parameters; otherwise from the static findings of `text` (read from `path`)."""
    if probe_result and probe_result.get("parameters"):
        return from_probe(probe_result)
    path = path or (probe_result or {}).get("path")
    if text is None and path:
        from gradtrace.engine import read_source

        text, _ = read_source(path)
    from gradtrace.engine import check_source

    findings = check_source(text or "", path or "<unsaved>").findings if text is not None else []
    gm = from_static(findings, path)
    if probe_result:
        err = probe_result.get("error") or {}
        gm.notes.insert(0, f"The probe did not give parameters ({probe_result.get('status')}: "
                        f"{err.get('message', 'no parameters')}); showing the static map.")
    return gm


def _script_json(obj) -> str:
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def payload(gm: GradMap) -> dict:
    """For the webview: the SVG, its styles, the click index and the labels around it."""
    from gradtrace.gradmap.assets import CSS

    return {"source": gm.source, "title": gm.title, "summary": gm.summary, "notes": gm.notes, "path": gm.path,
            "stale": gm.stale, "svg": render_svg(gm), "css": CSS, "index": gm.index()}


def render_html(gm: GradMap) -> str:
    from gradtrace.gradmap.assets import CSS, PAGE_JS

    e = html.escape
    kind = ("probe result" if gm.source == "probe" else "static analysis only") + (" (stale)" if gm.stale else "")
    notes = "".join(f"<p class=\"gt-note\">{e(n)}</p>" for n in gm.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(gm.title)}</title>
<style>{CSS}</style></head>
<body>
<div class="gt-bar"><span class="gt-kind gt-{gm.source}">{e(kind)}</span>
<span class="gt-summary" id="gt-summary">{e(gm.summary)}</span><button id="gt-fit" type="button">Fit / actual size</button></div>
{notes}<div id="gt-details">Click a parameter, module or cut for details.</div>
<div id="gt-map" class="gt-fit">{render_svg(gm)}</div>
<script type="application/json" id="gt-index">{_script_json(gm.index())}</script>
<script>{PAGE_JS}</script>
</body></html>
"""


def write(gm: GradMap, out_path: str) -> str:
    """Write the picture; the format follows the extension (.svg, .html/.htm, .dot). Returns the format."""
    ext = os.path.splitext(out_path)[1].lower()
    if ext == ".svg":
        text, fmt = '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n' + render_svg(gm), "svg"
    elif ext in (".html", ".htm"):
        text, fmt = render_html(gm), "html"
    elif ext in (".dot", ".gv"):
        text, fmt = to_dot(gm), "dot"
    else:
        raise ValueError(f"--graph: write .svg, .html or .dot, not {ext or 'a file without extension'!r}")
    with open(out_path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return fmt
