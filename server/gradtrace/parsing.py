"""`ast.parse` that several threads may call at once.

CPython 3.11 counts the depth of the AST objects it builds in one counter per interpreter. When a thread switch
happens while a tree is being built (a finalizer run by the garbage collector is enough) and another thread builds a
tree meanwhile, the count comes out wrong and the parse raises "SystemError: AST constructor recursion depth
mismatch" (CPython gh-106905). The language server parses in several threads (analysis, hover, probes): every parse
of ours goes through one lock.
"""

from __future__ import annotations

import ast
import threading

_BUILDING = threading.Lock()


def parse(source: str | bytes, filename: str = "<unknown>", **kwargs) -> ast.Module:
    """`ast.parse(source, filename, **kwargs)`, one tree built at a time in this process."""
    with _BUILDING:
        return ast.parse(source, filename, **kwargs)
