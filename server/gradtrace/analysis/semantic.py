"""One semantic model of a document: scopes, bindings, def-use, and where each node sits.

Built once per parsed version (`SourceFile.semantic`) from one walk over the tree; rules read it instead
of resolving names themselves:

- scopes: the module, classes, functions, lambdas and comprehensions, each with the names it binds
  (name -> its bindings in source order) and, for a class, the attributes its methods set on `self`;
- def-use: each load of a name resolved to the scope that defines the name and to the binding it reads,
  and each binding to the loads that read it;
- where a node is: its parent, its statement, the function, class, loops and `with` blocks around it;
- order: does A run before B in the same body, is a node inside a loop's body.

Resolution follows Python: local, enclosing functions, module (a class body is not visible from its
methods), `global` and `nonlocal`, comprehension targets local to the comprehension, `:=` binding
outside it. A load reads the last binding before it in its own scope; in an enclosing function's scope
(a nested function or lambda, which runs later) the last binding of all. Branches are not told apart:
after `if c: x = a` / `else: x = b` a load reads `x = b`; rules that must see every binding read
`Scope.bindings`.
"""

from __future__ import annotations

import ast

from gradtrace.analysis.source import node_fields
from gradtrace.records import field, record

FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
LOOPS = (ast.For, ast.AsyncFor, ast.While)
WITHS = (ast.With, ast.AsyncWith)
TARGET_PARTS = (ast.Tuple, ast.List, ast.Starred)  # a binder reaches the names inside these
STATEMENTS = frozenset(ast.stmt.__subclasses__())
# Fields that hold child nodes, last first (`node_fields`: contexts and operators are shared singletons, not
# children anyone asks the parent of; a `Global`'s names and a class pattern's attributes are strings).
CHILD_FIELDS: dict[type, tuple[str, ...]] = {}


def _child_fields(cls: type) -> tuple[str, ...]:
    return tuple(reversed([f for f in node_fields(cls) if f not in ("kwd_attrs", "names")]))


@record(eq=False)
class Binding:
    """One place that binds a name (or, for `attribute`, sets `obj.name`).

    kind: parameter | assignment | annotation (`x: T` with no value) | augmented | loop | with | named
    (`:=`) | comprehension | import | function | class | except | match | delete | attribute.
    """

    name: str
    kind: str
    node: ast.AST  # the bound Name / arg / alias / Attribute, or the def, class or except handler
    statement: ast.AST  # the statement that binds (the function or lambda for a parameter)
    scope: Scope
    at: tuple[int, int]  # where the binding takes effect (after its value is computed)
    target: ast.AST | None = None  # the whole target the node is part of (`a, b` in `a, b = f()`)
    value: ast.expr | None = None  # the value bound, when the node is the whole target of `=`/`:=`
    index: int | None = None  # a positional parameter's position
    uses: list[ast.Name] = field(default_factory=list)  # the loads that read this binding


@record(eq=False)
class Scope:
    node: ast.AST  # Module, ClassDef, FunctionDef, AsyncFunctionDef, Lambda or a comprehension
    kind: str  # module | class | function | lambda | comprehension
    parent: Scope | None
    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    uses: dict[str, list[ast.Name]] = field(default_factory=dict)  # loads of names this scope defines
    declared: dict[str, str] = field(default_factory=dict)  # name -> "global" | "nonlocal"
    attributes: dict[str, list[Binding]] = field(default_factory=dict)  # class: `self.x = ...` in methods

    def only(self, name: str) -> Binding | None:
        """The binding of `name` when this scope binds it exactly once."""
        found = self.bindings.get(name)
        return found[0] if found is not None and len(found) == 1 else None


def _end(node: ast.AST) -> tuple[int, int]:
    return (node.end_lineno, node.end_col_offset)


def _start(node: ast.AST) -> tuple[int, int]:
    return (node.lineno, node.col_offset)


class SemanticModel:
    """Built by `SourceFile.semantic`; `parents` is the file's parent map when it exists already (else the
    walk fills it, and `SourceFile.parents` reuses it)."""

    def __init__(self, source, parents: dict[int, ast.AST] | None = None):
        self.source = source
        tree = source.tree
        self._fill_parents = parents is None
        self.parents: dict[int, ast.AST] = {} if parents is None else parents
        self.scopes: dict[int, Scope] = {}  # id(scope node) -> Scope
        self._scope_at: dict[int, Scope] = {}  # id(statement, or a node asked about) -> the scope that runs it
        self._bound: dict[int, Binding] = {}  # id(bound Name / arg / alias / Attribute) -> its binding
        self._made_by: dict[int, list[Binding]] = {}  # id(statement) -> the bindings it makes
        self._loads: dict[str, list[tuple[ast.Name, Scope]]] = {}  # name -> its loads, with their scopes
        self._resolved: dict[int, tuple[Scope | None, Binding | None]] = {}  # id(load) -> looked up, per name
        self._grouped: dict[type, dict[int, list]] = {}
        self.attributes: dict[str, list[Binding]] = {}  # every `obj.name = ...` in the file, by name
        self.module = self._walk(tree)

    # ------------------------------------------------------------------ building

    def _new_scope(self, node: ast.AST, kind: str, parent: Scope | None) -> Scope:
        scope = Scope(node, kind, parent)
        self.scopes[id(node)] = scope
        return scope

    def _bind(self, name: str, kind: str, node: ast.AST, statement: ast.AST, scope: Scope, at, **extra) -> Binding:
        if kind == "named":
            while scope.kind == "comprehension":  # `:=` binds in the enclosing function or module
                scope = scope.parent
        declared = scope.declared.get(name)
        if declared == "global":
            scope = self.module
        elif declared == "nonlocal":
            outer = scope.parent
            while outer is not None and outer.kind not in ("function", "lambda"):
                outer = outer.parent
            scope = outer or self.module
        binding = Binding(name, kind, node, statement, scope, at, **extra)
        scope.bindings.setdefault(name, []).append(binding)
        self._bound[id(node)] = binding
        self._made_by.setdefault(id(statement), []).append(binding)
        return binding

    def _walk(self, tree: ast.Module) -> Scope:
        module = self._new_scope(tree, "module", None)
        self.module = module
        stack = [(child, tree, module, None) for child in reversed(tree.body)]
        push, pop = stack.append, stack.pop
        parents, fill, scope_at, loads = self.parents, self._fill_parents, self._scope_at, self._loads
        Name, Load, Attribute, AST = ast.Name, ast.Load, ast.Attribute, ast.AST
        special = self._handlers()
        while stack:
            node, parent, scope, binder = pop()
            if fill:
                parents[id(node)] = parent
            cls = node.__class__
            if cls is Name:
                if node.ctx.__class__ is Load:
                    loads.setdefault(node.id, []).append((node, scope))
                else:
                    self._bind_target(node, node.id, scope, binder)
                continue
            if cls in STATEMENTS:
                scope_at[id(node)] = scope
            handler = special.get(cls)
            if handler is not None:
                handler(node, scope, binder, push)
                continue
            if cls is Attribute and binder is not None and node.ctx.__class__ is not Load:
                self._bind_attribute(node, scope, binder)
            inherit = binder if cls in TARGET_PARTS else None
            fields = CHILD_FIELDS.get(cls)
            if fields is None:
                fields = CHILD_FIELDS[cls] = _child_fields(cls)
            for name in fields:
                value = getattr(node, name, None)
                if value.__class__ is list:
                    for child in reversed(value):
                        if isinstance(child, AST):
                            push((child, node, scope, inherit))
                elif isinstance(value, AST):
                    push((value, node, scope, inherit))
        return module

    def _handlers(self) -> dict:
        def targets(kind):
            def handle(node, scope, binder, push):
                for value in reversed(self._values(node)):
                    push((value, node, scope, None))
                for target in reversed(self._targets(node)):
                    push((target, node, scope, (kind, node, target)))
            return handle

        handlers = {
            ast.Assign: targets("assignment"),
            ast.AugAssign: targets("augmented"),
            ast.For: targets("loop"),
            ast.AsyncFor: targets("loop"),
            ast.NamedExpr: targets("named"),
            ast.Delete: targets("delete"),
            ast.AnnAssign: self._annotated,
            ast.withitem: self._with_item,
            ast.FunctionDef: self._function,
            ast.AsyncFunctionDef: self._function,
            ast.Lambda: self._function,
            ast.ClassDef: self._class,
            ast.Import: self._import,
            ast.ImportFrom: self._import,
            ast.Global: self._declare,
            ast.Nonlocal: self._declare,
            ast.ExceptHandler: self._except,
        }
        for kind in COMPREHENSIONS:
            handlers[kind] = self._comprehension
        for kind in (ast.With, ast.AsyncWith):
            handlers[kind] = self._with
        for name in ("MatchAs", "MatchStar", "MatchMapping"):
            if hasattr(ast, name):
                handlers[getattr(ast, name)] = self._match_capture
        return handlers

    @staticmethod
    def _targets(node) -> list:
        if isinstance(node, (ast.Assign, ast.Delete)):
            return node.targets
        return [node.target]

    @staticmethod
    def _values(node) -> list:
        if isinstance(node, (ast.For, ast.AsyncFor)):
            return [node.iter, *node.body, *node.orelse]
        return [] if isinstance(node, ast.Delete) else [node.value]

    def _bind_target(self, node: ast.AST, name: str, scope: Scope, binder) -> None:
        kind, statement, target = binder if binder is not None else ("assignment", self.parents.get(id(node)), node)
        if isinstance(node.ctx, ast.Del):
            kind = "delete"
        whole = target is node
        value = getattr(statement, "value", None) if whole and kind in ("assignment", "named") else None
        if kind == "loop":
            at = _end(statement.iter)
        elif kind == "with":
            at = _end(target)
        elif kind == "comprehension":
            at = (0, 0)
        else:
            at = _end(statement)
        self._bind(name, kind, node, statement, scope, at, target=target, value=value)

    def _bind_attribute(self, node: ast.Attribute, scope: Scope, binder) -> None:
        kind, statement, target = binder
        value = getattr(statement, "value", None) if target is node and kind == "assignment" else None
        binding = Binding(node.attr, "attribute", node, statement, scope, _end(statement), target=target,
                          value=value)
        self._bound[id(node)] = binding
        self._made_by.setdefault(id(statement), []).append(binding)
        self.attributes.setdefault(node.attr, []).append(binding)
        method = scope.node
        if scope.kind == "function" and scope.parent.kind == "class" and isinstance(node.value, ast.Name):
            positional = method.args.posonlyargs + method.args.args
            if positional and positional[0].arg == node.value.id:
                scope.parent.attributes.setdefault(node.attr, []).append(binding)

    def _annotated(self, node: ast.AnnAssign, scope, binder, push) -> None:
        kind = "assignment" if node.value is not None else "annotation"
        if node.value is not None:
            push((node.value, node, scope, None))
        push((node.annotation, node, scope, None))
        push((node.target, node, scope, (kind, node, node.target)))

    def _with(self, node, scope, binder, push) -> None:
        for child in reversed(node.body):
            push((child, node, scope, None))
        for item in reversed(node.items):
            push((item, node, scope, ("with", node, item.optional_vars)))

    def _with_item(self, node: ast.withitem, scope, binder, push) -> None:
        if node.optional_vars is not None:
            push((node.optional_vars, node, scope, binder))
        push((node.context_expr, node, scope, None))

    def _function(self, node, scope, binder, push) -> None:
        lambda_ = isinstance(node, ast.Lambda)
        if not lambda_:
            self._bind(node.name, "function", node, node, scope, _end(node))
        inner = self._new_scope(node, "lambda" if lambda_ else "function", scope)
        if lambda_:
            push((node.body, node, inner, None))
        else:
            for child in reversed(node.body):
                push((child, node, inner, None))
            if node.returns is not None:
                push((node.returns, node, scope, None))
        args = node.args
        if self._fill_parents:
            self.parents[id(args)] = node
        start = _start(node)
        positional = args.posonlyargs + args.args
        others = [args.vararg, *args.kwonlyargs, args.kwarg]
        for index, arg in enumerate([*positional, *others]):
            if arg is None:
                continue
            if self._fill_parents:
                self.parents[id(arg)] = args
            self._bind(arg.arg, "parameter", arg, node, inner, start,
                       index=index if index < len(positional) else None)
            if arg.annotation is not None:
                push((arg.annotation, arg, scope, None))
        for default in reversed([*args.defaults, *[d for d in args.kw_defaults if d is not None]]):
            push((default, args, scope, None))
        for outer in reversed([*getattr(node, "decorator_list", ()), *getattr(node, "type_params", ())]):
            push((outer, node, scope, None))

    def _class(self, node: ast.ClassDef, scope, binder, push) -> None:
        self._bind(node.name, "class", node, node, scope, _end(node))
        inner = self._new_scope(node, "class", scope)
        for child in reversed(node.body):
            push((child, node, inner, None))
        for child in reversed([*node.decorator_list, *getattr(node, "type_params", ()), *node.bases, *node.keywords]):
            push((child, node, scope, None))

    def _comprehension(self, node, scope, binder, push) -> None:
        inner = self._new_scope(node, "comprehension", scope)
        results = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        for index, generator in reversed(list(enumerate(node.generators))):
            if self._fill_parents:
                self.parents[id(generator)] = node
            for condition in reversed(generator.ifs):
                push((condition, generator, inner, None))
            push((generator.target, generator, inner, ("comprehension", generator, generator.target)))
            push((generator.iter, generator, scope if index == 0 else inner, None))  # the first runs outside
        for result in reversed(results):
            push((result, node, inner, None))

    def _import(self, node, scope, binder, push) -> None:
        for alias in node.names:
            if self._fill_parents:
                self.parents[id(alias)] = node
            if alias.name != "*":
                self._bind((alias.asname or alias.name).split(".")[0], "import", alias, node, scope, _end(node))

    def _declare(self, node, scope, binder, push) -> None:
        kind = "global" if isinstance(node, ast.Global) else "nonlocal"
        for name in node.names:
            scope.declared[name] = kind

    def _except(self, node: ast.ExceptHandler, scope, binder, push) -> None:
        if node.name:
            self._bind(node.name, "except", node, node, scope, _start(node))
        for child in reversed([*([node.type] if node.type is not None else []), *node.body]):
            push((child, node, scope, None))

    def _match_capture(self, node, scope, binder, push) -> None:
        name = getattr(node, "name", None) or getattr(node, "rest", None)
        if name:
            self._bind(name, "match", node, node, scope, _end(node))
        for child in reversed(list(ast.iter_child_nodes(node))):
            push((child, node, scope, None))

    # ------------------------------------------------------------------ def-use

    def _resolve(self, name: str) -> None:
        """Look up every load of `name` (once per name, on first use)."""
        loads = self._loads.pop(name, None)
        if loads is None:
            return
        resolved = self._resolved
        for node, scope in loads:
            owner, binding = found = self._lookup(node, scope)
            resolved[id(node)] = found
            if owner is not None:
                owner.uses.setdefault(name, []).append(node)
            if binding is not None:
                binding.uses.append(node)

    def _lookup(self, node: ast.Name, scope: Scope) -> tuple[Scope | None, Binding | None]:
        name, at = node.id, _start(node)
        current, deferred, own = scope, False, True
        while current is not None:
            if current.kind == "class" and not own:
                current = current.parent  # methods do not see their class's body
                continue
            declared = current.declared.get(name)
            if declared is not None:
                deferred = True
                if declared == "global":
                    current = self.module
                    own = False
                    declared = None
                else:
                    current = current.parent
                    while current is not None and current.kind not in ("function", "lambda"):
                        current = current.parent
                    continue
            found = current.bindings.get(name)
            if found:
                if deferred or current.kind == "comprehension":
                    return current, found[-1]
                return current, next((b for b in reversed(found) if b.at <= at), None)
            if current.kind in ("function", "lambda"):
                deferred = True
            own = False
            current = current.parent
        return None, None

    def binding_of(self, node: ast.AST) -> Binding | None:
        """For a load: the binding it reads (None: a builtin, an unknown name, or read before any binding).
        For a bound Name, arg, alias, Attribute, def or class: the binding it makes."""
        found = self._bound.get(id(node))
        if found is not None or node.__class__ is not ast.Name:
            return found
        self._resolve(node.id)
        return self._resolved.get(id(node), (None, None))[1]

    def defining_scope(self, node: ast.Name) -> Scope | None:
        """The scope a loaded name is looked up in (None for builtins and unknown names)."""
        self._resolve(node.id)
        return self._resolved.get(id(node), (None, None))[0]

    def sole_binding(self, node: ast.Name) -> Binding | None:
        """The binding a loaded name reads when its scope binds that name only there."""
        binding = self.binding_of(node)
        return binding if binding is not None and binding.scope.only(binding.name) is binding else None

    def uses_of(self, binding: Binding) -> list[ast.Name]:
        """The loads that read `binding`."""
        self._resolve(binding.name)
        return binding.uses

    def uses_in(self, scope: Scope, name: str) -> list[ast.Name]:
        """Every load of `name` looked up in `scope`, whichever of its bindings it reads."""
        self._resolve(name)
        return scope.uses.get(name, [])

    def made_by(self, statement: ast.AST) -> list[Binding]:
        """The bindings a statement (or def, class, comprehension) makes, in source order."""
        return self._made_by.get(id(statement), [])

    def calls_of(self, binding: Binding) -> list[ast.Call]:
        """Calls of what a binding holds by its name (`f(...)` where `f` reads the binding)."""
        calls = []
        for use in self.uses_of(binding):
            parent = self.parents.get(id(use))
            if isinstance(parent, ast.Call) and parent.func is use:
                calls.append(parent)
        return calls

    # ------------------------------------------------------------------ where a node is

    def parent(self, node: ast.AST) -> ast.AST | None:
        return self.parents.get(id(node))

    def ancestors(self, node: ast.AST):
        """The parents of `node`, innermost first, up to the module."""
        node = self.parents.get(id(node))
        while node is not None:
            yield node
            node = self.parents.get(id(node))

    def scope_of(self, node: ast.AST) -> Scope:
        """The scope whose code evaluates `node` (a def or class: the scope that defines it; a parameter:
        its function's scope). Remembered for every node on the way up, so asking for all the nodes of a
        deeply nested expression stays linear."""
        bound = self._bound.get(id(node))
        if bound is not None and bound.kind == "parameter":
            return bound.scope
        known, parents = self._scope_at, self.parents
        path = []
        child = node
        while True:
            found = known.get(id(child))
            if found is not None:
                break
            path.append(child)
            parent = parents.get(id(child))
            if parent is None:
                found = self.module
                break
            if parent.__class__ is ast.Lambda and child is parent.body:
                found = self.scopes[id(parent)]
                break
            if parent.__class__ is ast.comprehension:
                owner = parents[id(parent)]
                if not (child is parent.iter and owner.generators[0] is parent):
                    found = self.scopes[id(owner)]
                    break
                parent = owner  # the first iterable is evaluated outside the comprehension
            elif isinstance(parent, COMPREHENSIONS):
                found = self.scopes[id(parent)]
                break
            child = parent
        for visited in path:
            known[id(visited)] = found
        return found

    def function_of(self, node: ast.AST) -> ast.AST:
        """The function or lambda whose body runs `node`, else the module node (class bodies and
        comprehensions run in the function around them)."""
        scope = self.scope_of(node)
        while scope.kind in ("class", "comprehension"):
            scope = scope.parent
        return scope.node

    def enclosing_class(self, node: ast.AST) -> ast.ClassDef | None:
        """The class whose body (or one of whose methods) holds `node`."""
        return next((a for a in self.ancestors(node) if isinstance(a, ast.ClassDef)), None)

    def statement_of(self, node: ast.AST) -> ast.stmt | None:
        """The innermost statement that holds `node` (`node` itself when it is one)."""
        if isinstance(node, ast.stmt):
            return node
        return next((a for a in self.ancestors(node) if isinstance(a, ast.stmt)), None)

    def _blocks_around(self, node: ast.AST, kinds: tuple):
        """(block, the child of it on the way to `node`) for each `kinds` block around `node` in the
        same function, innermost first."""
        child = node
        for parent in self.ancestors(node):
            if isinstance(parent, DEFINITIONS):
                return
            if isinstance(parent, kinds):
                yield parent, child
            child = parent

    def loops_around(self, node: ast.AST) -> list[ast.stmt]:
        """The loops whose body repeats `node` (a `while` test too), innermost first, in its function."""
        return [loop for loop, child in self._blocks_around(node, LOOPS)
                if child in loop.body or (isinstance(loop, ast.While) and child is loop.test)]

    def in_loop(self, node: ast.AST, loop: ast.stmt) -> bool:
        return any(found is loop for found in self.loops_around(node))

    def withs_around(self, node: ast.AST) -> list[ast.stmt]:
        """The `with` statements whose body holds `node`, innermost first, in its function."""
        return [block for block, child in self._blocks_around(node, WITHS) if child in block.body]

    def runs_before(self, first: ast.AST, second: ast.AST) -> bool:
        """`first` ends before `second` starts, both run by the same function (source order; a loop's
        next iteration is not considered)."""
        return _end(first) <= _start(second) and self.function_of(first) is self.function_of(second)

    def nodes_in(self, function: ast.AST, kind: type) -> list:
        """The nodes of one type that `function` (a def, a lambda or the module) runs itself, not through a
        nested function (in the node index's order)."""
        grouped = self._grouped.get(kind)
        if grouped is None:
            grouped = self._grouped[kind] = {}
            for node in self.source.nodes(kind):
                grouped.setdefault(id(self.function_of(node)), []).append(node)
        return grouped.get(id(function), [])
