"""The semantic model: scopes, bindings, def-use, enclosing definitions and statement order."""

from __future__ import annotations

import ast
import textwrap

import pytest
from gradtrace.analysis.source import SourceFile, parent_map

SINGLETONS = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)


def parse(text: str) -> SourceFile:
    return SourceFile.parse("example.py", textwrap.dedent(text).lstrip("\n"))


def names(source: SourceFile, name: str, ctx=ast.Load) -> list[ast.Name]:
    return [n for n in source.nodes(ast.Name) if n.id == name and isinstance(n.ctx, ctx)]


def at(source: SourceFile, line: int, name: str) -> ast.Name:
    """The one load of `name` on `line`."""
    [found] = [n for n in names(source, name) if n.lineno == line]
    return found


def definition(source: SourceFile, name: str) -> ast.AST:
    [found] = [n for n in source.nodes(ast.FunctionDef, ast.ClassDef) if n.name == name]
    return found


def bound_line(source: SourceFile, node: ast.Name) -> int | None:
    binding = source.semantic.binding_of(node)
    return None if binding is None else binding.node.lineno


def test_scopes_and_bindings_in_source_order():
    source = parse("""
        import torch.nn as nn
        from torch import optim

        x = 1
        x += 2
        y: int
        for i, (j, *rest) in enumerate([]):
            with open(i) as handle, nn.Identity():
                del j


        def f(a, /, b=x, *args, c, **kw):
            z = [x for x in range(a) if x]
            return (w := z)


        class C(nn.Module):
            k = 1

            def m(self):
                self.h = self.k
        """)
    semantic = source.semantic
    module = semantic.module
    kinds = {name: [b.kind for b in bindings] for name, bindings in module.bindings.items()}
    assert kinds == {"nn": ["import"], "optim": ["import"], "x": ["assignment", "augmented"], "y": ["annotation"],
                     "i": ["loop"], "j": ["loop", "delete"], "rest": ["loop"], "handle": ["with"],
                     "f": ["function"], "C": ["class"]}
    function = semantic.scopes[id(definition(source, "f"))]
    assert function.kind == "function" and function.parent is module
    parameters = [(b.name, b.index) for b in function.bindings.values() for b in b if b.kind == "parameter"]
    assert parameters == [("a", 0), ("b", 1), ("args", None), ("c", None), ("kw", None)]
    assert [b.kind for b in function.bindings["w"]] == ["named"]  # `:=` binds in the function
    assert "x" not in function.bindings  # the comprehension's target is its own
    comprehension = semantic.scopes[id(source.nodes(ast.ListComp)[0])]
    assert comprehension.kind == "comprehension" and [b.kind for b in comprehension.bindings["x"]] == ["comprehension"]
    klass = semantic.scopes[id(definition(source, "C"))]
    assert set(klass.bindings) == {"k", "m"}
    [attribute] = klass.attributes["h"]
    assert attribute.kind == "attribute" and isinstance(attribute.value, ast.Attribute)
    assert semantic.attributes["h"] == [attribute]


def test_assignment_value_and_unpacking_target():
    source = parse("""
        a = b = f()
        c, d = g()
        e: float = 1.0
        """)
    module = source.semantic.module
    assert module.only("a").value is module.only("b").value is source.nodes(ast.Assign)[0].value
    c = module.only("c")
    assert c.value is None and isinstance(c.target, ast.Tuple) and c.node in c.target.elts
    assert isinstance(module.only("e").value, ast.Constant)


def test_loads_read_the_last_binding_before_them():
    source = parse("""
        x = 1
        print(x)
        x = x + 1
        print(x)


        def later():
            return x
        """)
    assert bound_line(source, at(source, 2, "x")) == 1
    assert bound_line(source, at(source, 3, "x")) == 1  # the value is computed before the name is rebound
    assert bound_line(source, at(source, 4, "x")) == 3
    assert bound_line(source, at(source, 8, "x")) == 3  # a function runs later: the last binding
    first = source.semantic.module.bindings["x"][0]
    assert source.semantic.uses_of(first) == [at(source, 2, "x"), at(source, 3, "x")]
    assert len(source.semantic.uses_in(source.semantic.module, "x")) == 4


def test_resolution_follows_python_scoping():
    source = parse("""
        n = 0
        k = "module"


        class Holder:
            k = "class"
            seen = k
            values = [k for _ in range(2)]

            def method(self):
                return k


        def outer():
            m = 1

            def inner():
                nonlocal m
                m = 2
                return m

            def reads():
                return m, n

            return inner


        def writer():
            global n
            n = 5
        """)
    semantic = source.semantic
    class_scope = semantic.scopes[id(definition(source, "Holder"))]
    assert semantic.binding_of(at(source, 7, "k")).scope is class_scope  # the class body sees its own names
    assert semantic.binding_of(at(source, 8, "k")).scope is semantic.module  # a comprehension there does not
    assert semantic.binding_of(at(source, 11, "k")).scope is semantic.module  # nor does a method
    outer = semantic.scopes[id(definition(source, "outer"))]
    assert [b.statement.lineno for b in outer.bindings["m"]] == [15, 19]  # `nonlocal` binds in `outer`
    assert semantic.defining_scope(at(source, 23, "m")) is outer
    assert [b.statement.lineno for b in semantic.module.bindings["n"]] == [1, 30]  # `global` binds in the module
    assert semantic.defining_scope(at(source, 23, "n")) is semantic.module
    assert semantic.defining_scope(at(source, 8, "range")) is None  # a builtin


def test_read_before_any_binding_in_its_scope_reads_nothing():
    source = parse("""
        def f():
            print(total)
            total = 1
        """)
    node = at(source, 2, "total")
    assert source.semantic.binding_of(node) is None
    assert source.semantic.defining_scope(node).kind == "function"


def test_sole_binding_and_calls_of_a_function():
    source = parse("""
        def build(width):
            return width


        layer = build(4)
        other = build(width=8)
        twice = 1
        twice = 2
        print(layer, twice)
        """)
    semantic = source.semantic
    assert semantic.sole_binding(at(source, 9, "layer")).value is source.nodes(ast.Assign)[0].value
    assert semantic.sole_binding(at(source, 9, "twice")) is None
    build = semantic.binding_of(definition(source, "build"))
    assert [call.lineno for call in semantic.calls_of(build)] == [5, 6]


def test_where_a_node_is():
    source = parse("""
        import torch


        class Net:
            def forward(self, x):
                for step in range(3):
                    with torch.no_grad():
                        while x:
                            y = (lambda q: q + x)(step)
                return y


        total = 0
        """)
    semantic = source.semantic
    assignment = next(a for a in source.nodes(ast.Assign) if a.lineno == 9)
    inner_x = at(source, 9, "x")
    method = definition(source, "forward")
    lambda_ = source.nodes(ast.Lambda)[0]
    loop, while_ = source.nodes(ast.For)[0], source.nodes(ast.While)[0]
    assert semantic.function_of(assignment) is method
    assert semantic.function_of(inner_x) is lambda_
    assert semantic.function_of(source.nodes(ast.ClassDef)[0]) is source.tree
    assert semantic.scope_of(inner_x).kind == "lambda"
    assert semantic.enclosing_class(inner_x) is source.nodes(ast.ClassDef)[0]
    assert semantic.statement_of(inner_x) is assignment
    assert semantic.loops_around(assignment) == [while_, loop]
    assert semantic.loops_around(inner_x) == []  # the lambda's body is not repeated by the loops
    assert semantic.in_loop(while_.test, while_) and not semantic.in_loop(loop.iter, loop)
    assert semantic.withs_around(assignment) == [source.nodes(ast.With)[0]]
    assert isinstance(semantic.parent(inner_x), ast.BinOp)
    ret = source.nodes(ast.Return)[0]
    assert semantic.runs_before(assignment, ret) and not semantic.runs_before(ret, assignment)
    assert not semantic.runs_before(inner_x, ret)  # the lambda's body is another function


def test_nodes_in_a_function_exclude_nested_functions():
    source = parse("""
        def train(model):
            model.zero_grad()

            def closure():
                return model().backward()

            return closure


        train(None)
        """)
    semantic = source.semantic
    train, closure = definition(source, "train"), definition(source, "closure")
    assert [c.func.attr for c in semantic.nodes_in(train, ast.Call)] == ["zero_grad"]
    assert sorted(ast.unparse(c) for c in semantic.nodes_in(closure, ast.Call)) == ["model()", "model().backward()"]
    assert [c.lineno for c in semantic.nodes_in(source.tree, ast.Call)] == [10]
    assert [r.lineno for r in semantic.nodes_in(train, ast.Return)] == [7]


def test_defaults_decorators_and_first_iterable_run_outside():
    source = parse("""
        def f(a=x, *, b=y):
            return [v for v in a for w in v]
        """)
    semantic = source.semantic
    function = source.nodes(ast.FunctionDef)[0]
    assert semantic.scope_of(at(source, 1, "x")) is semantic.module
    assert semantic.scope_of(at(source, 1, "y")) is semantic.module
    first_iterable, second_iterable = (g.iter for g in source.nodes(ast.comprehension))
    assert semantic.scope_of(first_iterable) is semantic.scopes[id(function)]
    assert semantic.scope_of(second_iterable).kind == "comprehension"
    assert semantic.scope_of(function.args.args[0]) is semantic.scopes[id(function)]


@pytest.mark.parametrize("first", ["parents", "semantic"])
def test_one_parent_map_whichever_is_built_first(first):
    source = parse("""
        import torch

        def f(x, *, y=[i ** 2 for i in range(3)]):
            with torch.no_grad() as g:
                return {k: v for k, v in x.items() if -k}, lambda: (z := y)


        async def g(p: int = 1, **kw) -> None:
            async with p as (a, b):
                async for c in a:
                    try:
                        del c[0]
                    except* ValueError as error:
                        raise error from None
            match kw:
                case {"k": [1, *rest], **others} if rest:
                    pass
                case Point(x=0, y=q) | [q]:
                    global total
                    total: int = q
        """)
    getattr(source, first)
    assert source.parents is source.semantic.parents
    expected = parent_map(source.tree)
    nodes = {id(n): n for n in ast.walk(source.tree)}
    for key, parent in expected.items():
        if not isinstance(nodes[key], SINGLETONS):
            assert source.parents[key] is parent, ast.dump(nodes[key])
    bound = {name for scope in source.semantic.scopes.values() for name in scope.bindings}
    assert {"rest", "others", "q", "error", "a", "b", "c", "g", "z", "total"} <= bound
    assert [b.kind for b in source.semantic.module.bindings["total"]] == ["assignment"]  # `global` in `g`


# Rules read names through the model, so they see what Python binds: a closure's variable, a name a
# comprehension reuses, a same-named variable of another function. Each case is flagged where marked, and
# running it shows what the message says.
SCOPING = {
    "GT133": """
        import torch.nn as nn


        def build():
            head = nn.Linear(4, 2)

            def freeze():
                head.requires_grad = False  # expect: GT133

            freeze()
            return head


        claim = build().weight.requires_grad  # the parameters still require grad
        """,
    "GT136": """
        import torch
        import torch.nn as nn

        encoder = nn.Linear(4, 4)
        head = nn.Linear(4, 1)


        def saliency(x):
            h = encoder(x)
            sizes = [h for h in range(3)]
            head(h).sum().backward()
            return h.grad  # expect: GT136


        claim = saliency(torch.randn(2, 4)) is None
        """,
    "GT137": """
        import torch
        import torch.nn as nn


        def train(model, batches):
            opt = torch.optim.SGD(model.parameters(), lr=0.1)  # expect: GT137
            for x in batches:
                opt.zero_grad()
                model(x).sum().backward()


        def evaluate(model, opt=None):
            opt = None
            return model


        model = nn.Linear(4, 1)
        before = model.weight.clone()
        train(model, [torch.randn(2, 4)] * 3)
        claim = torch.equal(before, model.weight)  # nothing trained
        """,
}


@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
@pytest.mark.parametrize("code", list(SCOPING))
def test_rules_see_python_scoping(code):
    from gradtrace.engine import check_source

    text = textwrap.dedent(SCOPING[code]).lstrip("\n")
    expected = [n for n, line in enumerate(text.splitlines(), start=1) if f"# expect: {code}" in line]
    found = [f.line for f in check_source(text, "example.py").findings if f.code == code]
    assert found == expected
    namespace: dict = {}
    exec(compile(text, "example.py", "exec"), namespace)  # noqa: S102 - the example's own code
    assert namespace["claim"] is True
