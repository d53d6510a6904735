"""`gradtrace server`: the language server on stdio."""

from __future__ import annotations


def add_arguments(parser) -> None:
    """No options: the editor sends its settings in `initialize`."""


def run(args) -> int:
    from gradtrace.lsp.server import serve

    serve()
    return 0
