"""`gradtrace probe FILE --graph OUT.svg|OUT.html`: write the gradient map of the probe result."""

from __future__ import annotations

import sys


def write_graph(result: dict, out_path: str | None, source_path: str | None = None) -> bool:
    """Write the map (from the probe result, or the static findings when the probe gave no parameters).
    Returns False, after saying why on stderr, when it could not be written."""
    if not out_path:
        return True
    from gradtrace import gradmap

    try:
        gm = gradmap.build(result, path=result.get("path") or source_path)
        fmt = gradmap.write(gm, out_path)
    except (gradmap.GraphvizMissing, ValueError, OSError, RuntimeError) as exc:
        print(f"gradtrace: could not write the gradient map {out_path}: {exc}", file=sys.stderr)
        return False
    print(f"gradtrace: gradient map ({gm.source}, {fmt}) written to {out_path}: {gm.summary}", file=sys.stderr)
    return True
