"""Small precise edits built from `ast` spans (code-point columns), and libcst statement rewrites."""

from __future__ import annotations

import ast

from gradtrace.analysis.source import SourceFile
from gradtrace.findings import Edit


def replace_node(source: SourceFile, node: ast.AST, text: str) -> Edit:
    span = source.span(node)
    return Edit(span.line, span.column, span.end_line, span.end_column, text)


def delete_statement(source: SourceFile, stmt: ast.stmt, parent_body: list[ast.stmt] | None) -> Edit:
    """Remove a statement; a block's only statement becomes `pass`."""
    span = source.span(stmt)
    line_text = source.lines.line(span.line)
    if parent_body is not None and len(parent_body) == 1:
        return Edit(span.line, span.column, span.end_line, span.end_column, "pass")
    if line_text[: span.column - 1].strip() == "" and source.lines.line(span.end_line)[span.end_column - 1:].strip() in ("",):
        return Edit(span.line, 1, span.end_line + 1, 1, "")
    return Edit(span.line, span.column, span.end_line, span.end_column, "pass")


def rewrite_statement(source: SourceFile, stmt: ast.stmt, transformer) -> Edit | None:
    """Rewrite one statement with libcst, keeping its formatting; None when nothing changed.

    libcst is imported here, on first use: parsing a whole file with it costs 13-16x `ast.parse`, so
    only the statement a fix touches is ever parsed with it.
    """
    import textwrap

    import libcst as cst

    span = source.span(stmt)
    original = source.segment(stmt)
    indent = source.lines.line(span.line)[: span.column - 1]
    code = textwrap.dedent(indent + original) if "\n" in original else original
    try:
        module = cst.parse_module(code + "\n")
    except cst.ParserSyntaxError:
        return None
    new_module = module.visit(transformer)
    if new_module.deep_equals(module):
        return None
    new_code = new_module.code.rstrip("\n")
    if "\n" in new_code and indent:
        lines = new_code.split("\n")
        new_code = lines[0] + "\n" + "\n".join(indent + ln if ln else ln for ln in lines[1:])
    return Edit(span.line, span.column, span.end_line, span.end_column, new_code)


def enclosing_statement(source: SourceFile, node: ast.AST):
    """(statement containing `node`, the body list that holds it)."""
    parents = source.parents
    current = node
    while current is not None and not isinstance(current, ast.stmt):
        current = parents.get(id(current))
    if current is None:
        return None, None
    holder = parents.get(id(current))
    for field_name in ("body", "orelse", "finalbody", "handlers"):
        body = getattr(holder, field_name, None)
        if isinstance(body, list) and any(s is current for s in body):
            return current, body
    return current, None
