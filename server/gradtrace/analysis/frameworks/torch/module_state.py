"""State a module keeps on itself across calls, and what its constructor does to its own weights: facts read from
the methods' code."""

from __future__ import annotations

import ast

HARMLESS_STATE_READS = {"detach", "detach_", "size", "shape", "dim", "item", "len", "isinstance", "print", "device",
                        "dtype", "numel", "zero_", "fill_"}


def state_read_back(method: ast.AST, me: str, attr: str) -> ast.stmt | None:
    """The statement rebinding `me.attr` to what the method computes, when the method reads `me.attr` into a
    computation before rebinding it unconditionally (a test such as `is None`, `.detach()` or `.size()` is not
    such a read); None when it does not."""
    reads, stores = [], []
    for node in ast.walk(method):
        if isinstance(node, ast.Attribute) and node.attr == attr and isinstance(node.value, ast.Name) \
                and node.value.id == me:
            (stores if isinstance(node.ctx, ast.Store) else reads).append(node)
    if not reads or not stores:
        return None
    parents = {id(child): parent for parent in ast.walk(method) for child in ast.iter_child_nodes(parent)}

    def statement(node):
        while node is not None and not isinstance(node, ast.stmt):
            node = parents.get(id(node))
        return node

    rebinds = [statement(n) for n in stores]  # unconditional: an assignment in the method's own body
    rebinds = [n for n in rebinds if isinstance(n, (ast.Assign, ast.AnnAssign)) and parents.get(id(n)) is method]
    # a read in the first rebinding statement's value comes before the rebinding
    first_rebind = min(((n.end_lineno, n.end_col_offset) for n in rebinds), default=None)
    for read in sorted(reads, key=lambda n: (n.lineno, n.col_offset)):
        if first_rebind is not None and (read.lineno, read.col_offset) > first_rebind:
            break
        if not harmless_state_read(read, parents):
            return statement(max(stores, key=lambda n: (n.lineno, n.col_offset)))
    return None


def harmless_state_read(read: ast.Attribute, parents: dict) -> bool:
    parent = parents.get(id(read))
    if isinstance(parent, (ast.Compare, ast.BoolOp, ast.If, ast.IfExp, ast.UnaryOp)) \
            or (isinstance(parent, ast.Attribute) and parent.attr in HARMLESS_STATE_READS):
        return True
    return isinstance(parent, ast.Call) and parent.func is not read and (
        getattr(parent.func, "id", None) or getattr(parent.func, "attr", None)) in HARMLESS_STATE_READS


WEIGHT_ATTRS = ("weight", "bias")


def writes_into_weights(fn: ast.AST) -> bool:
    """Does a function write into a layer's weight in place: an item or slice assignment into `.weight` / `.bias`
    (or a name bound to one), or hand one to a helper of the file (not `nn.init.*`, which runs without gradient)?"""
    held = {t.id for node in ast.walk(fn) if isinstance(node, ast.Assign) and isinstance(node.value, ast.Attribute)
            and node.value.attr in WEIGHT_ATTRS for t in node.targets if isinstance(t, ast.Name)}
    for node in ast.walk(fn):
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if not isinstance(target, ast.Subscript):
                    continue
                while isinstance(target, ast.Subscript):
                    target = target.value
                if isinstance(target, ast.Attribute) and target.attr in WEIGHT_ATTRS or (
                        isinstance(target, ast.Name) and target.id in held):
                    return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and any(
                isinstance(a, ast.Attribute) and a.attr in WEIGHT_ATTRS
                for a in [*node.args, *(k.value for k in node.keywords)]):
            return True
    return False
