"""Small, format-preserving edits behind the TensorFlow and JAX quick-fixes.

Each helper returns `Edit`s computed from `ast` spans and the document's own text, so only the tokens
that change are rewritten (comments, spacing and the rest of the statement stay as they were).
"""

from __future__ import annotations

import ast

from gradtrace.findings import Edit, Fix

AT_METHODS = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply", ast.Div: "divide", ast.Pow: "power"}


def _edit(ctx, node: ast.AST, text: str) -> Edit:
    s = ctx.span(node)
    return Edit(s.line, s.column, s.end_line, s.end_column, text)


def int_literals(node: ast.AST | None) -> list[ast.Constant]:
    """The int literals that make a literal initial value integer (`3`, `-1`, `[[1, 0], [0, 1]]`)."""
    if node is None:
        return []
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return int_literals(node.operand)
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return [node]
    if isinstance(node, (ast.List, ast.Tuple)):
        out = []
        for e in node.elts:
            out.extend(int_literals(e))
        return out
    return []


def float_literal_fix(ctx, literal: ast.AST | None, what: str) -> Fix | None:
    consts = int_literals(literal)
    if not consts:
        return None
    edits = []
    for c in consts:
        text = ctx.source.segment(c)
        if not text.isdigit():
            return None  # hex, underscores: leave to the user
        edits.append(_edit(ctx, c, f"{text}.0"))
    return Fix(f"Make {what} a float literal", True, tuple(edits))


def insert_before_close(ctx, call: ast.Call, text: str) -> Edit | None:
    """Insert a keyword argument before the closing parenthesis of `call`."""
    seg = ctx.source.segment(call)
    if not seg.endswith(")"):
        return None
    s = ctx.span(call)
    inner = seg[seg.index("(") + 1 : -1] if "(" in seg else ""
    if not inner.strip():
        new = text
    elif inner.rstrip().endswith(","):
        new = " " + text
    else:
        new = ", " + text
    return Edit(s.end_line, s.end_column - 1, s.end_line, s.end_column - 1, new)


def persistent_fix(ctx, tape_call: ast.Call) -> Fix | None:
    for kw in tape_call.keywords:
        if kw.arg == "persistent":
            return Fix("Make the tape persistent (persistent=True)", True, (_edit(ctx, kw.value, "True"),))
    if tape_call.args:
        return Fix("Make the tape persistent (persistent=True)", True, (_edit(ctx, tape_call.args[0], "True"),))
    edit = insert_before_close(ctx, tape_call, "persistent=True")
    return Fix("Make the tape persistent (persistent=True)", True, (edit,)) if edit else None


def watch_fix(ctx, with_node: ast.With | None, tape_name: str | None, source_text: str) -> Fix | None:
    if with_node is None or not tape_name or not with_node.body:
        return None
    first = with_node.body[0]
    if first.lineno == with_node.lineno:
        return None  # one-line `with ...: stmt`
    line_text = ctx.source.lines.line(first.lineno)
    indent = line_text[: len(line_text) - len(line_text.lstrip())]
    text = f"{indent}{tape_name}.watch({source_text})\n"
    return Fix(f"Watch `{source_text}` on `{tape_name}`", True, (Edit(first.lineno, 1, first.lineno, 1, text),))


def alias_of(ctx, qualified: str) -> str | None:
    for local, qual in ctx.names.aliases.items():
        if qual == qualified:
            return local
    return None


def unconnected_fix(ctx, call: ast.Call) -> Fix | None:
    tf = alias_of(ctx, "tensorflow")
    if tf is None:
        return None
    edit = insert_before_close(ctx, call, f"unconnected_gradients={tf}.UnconnectedGradients.ZERO")
    if edit is None:
        return None
    return Fix("Return zeros for unconnected sources (unconnected_gradients=ZERO)", False, (edit,))


def at_update_fix(ctx, stmt: ast.stmt) -> Fix | None:
    """`x[i] = v` -> `x = x.at[i].set(v)`; `x[i] += v` -> `x = x.at[i].add(v)`."""
    if isinstance(stmt, ast.Assign):
        if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Subscript):
            return None
        target, method = stmt.targets[0], "set"
    elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Subscript):
        target = stmt.target
        method = AT_METHODS.get(type(stmt.op))
        if method is None:
            return None
    else:
        return None
    if not isinstance(target.value, (ast.Name, ast.Attribute)):
        return None
    base = ctx.source.segment(target.value)
    index = ctx.source.segment(target.slice)
    value = ctx.source.segment(stmt.value)
    text = f"{base} = {base}.at[{index}].{method}({value})"
    return Fix(f"Use `{base}.at[...].{method}(...)`", True, (_edit(ctx, stmt, text),))
