"""Shared reporting for the PyTorch rules whose finding is "this cut leaves X without gradient"."""

from __future__ import annotations

import ast

from gradtrace.analysis.core.values import display
from gradtrace.analysis.frameworks.torch.events import DeadCut
from gradtrace.findings import Fix, Related
from gradtrace.rules._messages import join_phrases


def names_phrase(lost: list[str], limit: int = 3) -> str:
    return join_phrases([f"`{display(s)}`" for s in lost], limit)


def cut_message(dead: DeadCut, line: int, where: str = "", var: str | None = None) -> str:
    c = dead.cut
    if c.var is None and var:
        c = c.with_var(var)
    subject = names_phrase(dead.lost)
    verb = "get" if len(dead.lost) > 1 else "gets"
    what = "a zero gradient" if c.zero else "no gradient"
    target = dead.sink.label
    cut_what = f" cuts `{c.var}`" if c.var else f" cuts it from `{target}`" if len(target) <= 24 else " cuts it"
    if dead.sink.kind == "output" and not c.var:
        cut_what = " cuts it from the module's output"
    message = f"{subject} {verb} {what}: `{c.op}` on line {line}{where}{cut_what}"
    if c.kind == "grad_disabled":
        message = f"{subject} {verb} {what}: `{c.op}` on line {line}{where} disables autograd"
    if c.kind == "own_draw":
        message = (f"{subject} {verb} {what}: `log_prob` of the distribution's own `rsample()` on line {line}{where} "
                   "does not depend on its loc")
    if c.kind == "function_backward":
        message = f"{subject} {verb} {what}: autograd runs `{c.op}` with gradients off, so line {line}{where}{cut_what}"
    if dead.partial:
        verb = "lose" if len(dead.lost) > 1 else "loses"
        message = (f"{subject} {verb} part of the gradient: `{c.op}` on line {line}{where} cuts the path through "
                   f"`{c.var or 'it'}`")
    if dead.raises and not c.zero:
        message += ", so `backward()` raises"
    message += "."
    return message


def report_dead_cuts(ctx, kinds: tuple[str, ...], fix_builder=None, advice: str = "") -> None:
    facts = ctx.torch
    this = ctx.source.path
    for dead in facts.dead_cuts(*kinds):
        c = dead.cut
        cut_module = c.module
        related: list[Related] = []
        for source_name in dead.lost[:5]:
            definition = facts.flow.definitions.get(source_name)
            if definition is not None:
                node, module = definition
                related.append(ctx.related(node, f"`{display(source_name)}` is defined here", source=module.source))
        sink = dead.sink
        if cut_module is not None and cut_module.path == this:
            where_node = c.node
            if sink.kind != "output" and sink.module.path == this:
                related.append(ctx.related(sink.node, f"differentiated here (`{sink.label}`)"))
            line = ctx.source.span(where_node).line
            message = cut_message(dead, line, var=facts.flow.cut_var(c))
            fix = fix_builder(ctx, dead) if fix_builder else None
            if fix is not None and fix.safe and dead.severity != "warning":
                fix = Fix(fix.title, False, fix.edits)  # only certain cuts are fixed without review
        elif sink.module.path == this and cut_module is not None:
            where_node = sink.node
            other = cut_module.source
            line = other.span(c.node).line
            rel = other.path.rsplit("/", 1)[-1]
            related.append(ctx.related(c.node, f"`{c.op}` cuts the graph here", source=other))
            message = cut_message(dead, line, where=f" of {rel}", var=facts.flow.cut_var(c))
            fix = None
        else:
            continue
        if advice:
            message += " " + advice
        ctx.report(where_node, message, severity=dead.severity, fix=fix, related=related,
                   data={"lost": [display(s) for s in dead.lost], "op": c.op, "kind": c.kind,
                         "zero": c.zero})


def rebound_after(semantic, node: ast.AST, name: str) -> bool:
    """Does the block that runs `node` rebind `name` after it (`optimizer.step(); loss = 0` in
    `if count % k == 0:`)? Then the graph `name` held is dropped on the path that ran `node`: a graph that outlives
    it is only on the paths that did not."""
    statement = semantic.statement_of(node)
    block = semantic.parent(statement) if statement is not None else None
    if not isinstance(block, (ast.If, ast.For, ast.While, ast.With)) or not name.isidentifier():
        return False
    body = next((b for b in (block.body, getattr(block, "orelse", [])) if statement in b), [])
    after = body[body.index(statement) + 1:] if statement in body else []
    return any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store)
               for stmt in after for n in ast.walk(stmt))


def call_receiver(node: ast.AST) -> ast.AST | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.value
    if isinstance(node, ast.Attribute):
        return node.value
    return None


def replace_node_fix(ctx, node: ast.AST, text: str, title: str, safe: bool) -> Fix:
    from gradtrace.fixes.edits import replace_node

    return Fix(title, safe, (replace_node(ctx.source, node, text),))
