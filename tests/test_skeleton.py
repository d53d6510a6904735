"""An imported file is parsed without its function bodies, each parsed when first read: the tree it ends up
with, its imports and what the analysis reports through it are those of a whole parse."""

from __future__ import annotations

import ast
import textwrap

import pytest
from gradtrace.analysis import skeleton
from gradtrace.analysis.project import Project
from gradtrace.analysis.skeleton import LAZY, LazyClassDef
from gradtrace.analysis.source import SourceFile
from gradtrace.engine import check_source

# shapes a line scan can trip on: docstrings with lines indented less than their function, headers over several
# lines, one-line functions, imports inside bodies (one over several lines), nested and async functions, a
# module-level string right after a method, triple quotes of the other kind inside a string, comments at
# column 0 inside a body, decorators, a trailing comment on a body's last line, an import after a one-line
# block's header
SHAPES = '''
"""Layers."""
import torch
import torch.nn as nn


def helper(x):
    """Doubles.

Example (indented less than the function):
def not_a_function(y):
    return y
"""
    return x * 2


def one_liner(x): return x + 1


def guarded(x):
    if x: import json
    try: from os import path
    except ImportError: path = None
    return json, path


def long_header(
    a,
    b: "dict[str, int]" = None,
) -> int:
    from collections import (
        OrderedDict,
        defaultdict,
    )
    import math
    return math.floor(a)


class Encoder(nn.Module):
    r"""Encodes.

    Uses \'\'\' inside a docstring.
    """

    def __init__(self, dim=4):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    @property
    def width(self):
        return self.fc.in_features  # the width

    def forward(self, x):
        def inner(y):
            return y.detach()
# a comment at column 0 inside the body
        try:
            from torch.nn import functional as F
        except ImportError:
            F = None
        return inner(self.fc(x))

    async def fetch(self):
        return await something()

    @staticmethod
    def scale(x):
        return x * 2


"""A module-level string after a method."""

'''


def big_module(extra: str = "") -> str:
    fillers = "".join(f"\n\ndef filler_{i}(x):\n    '''Filler {i}.'''\n    y = x + {i}\n    return y\n"
                      for i in range(60))
    return textwrap.dedent(SHAPES) + extra + fillers


def dump(tree) -> str:
    return ast.dump(tree, include_attributes=True)


def test_a_lazy_parse_completed_is_the_whole_parse():
    text = big_module()
    lazy = SourceFile.parse("layers.py", text, lazy=True)
    assert lazy.lazy
    whole = SourceFile.parse("layers.py", text)
    assert not whole.lazy
    assert dump(lazy.complete().tree) == dump(whole.tree)
    assert not lazy.lazy


def test_only_the_bodies_read_are_parsed():
    lazy = SourceFile.parse("layers.py", big_module(), lazy=True)
    classes = {node.name: node for node in lazy.tree.body if isinstance(node, ast.ClassDef)}
    methods = {node.name: node for node in classes["Encoder"].body if isinstance(node, ast.FunctionDef)}
    assert all(isinstance(method, LAZY) for method in methods.values())
    body = methods["forward"].body
    assert [type(stmt).__name__ for stmt in body] == ["FunctionDef", "Try", "Return"]
    assert type(methods["forward"]) is ast.FunctionDef
    assert isinstance(methods["__init__"], LAZY)  # not read: still not parsed
    assert methods["forward"].end_lineno == body[-1].end_lineno


def test_the_imports_inside_bodies_are_known_without_parsing_them():
    lazy = SourceFile.parse("layers.py", big_module(), lazy=True)
    whole = SourceFile.parse("layers.py", big_module())
    names = lambda source: sorted((n.lineno, [a.name for a in n.names]) for n in source.imports)  # noqa: E731
    assert names(lazy) == names(whole)
    assert any(names == ["OrderedDict", "defaultdict"] for _, names in names(lazy))
    assert {"json", "path"} <= {name for _, names in names(lazy) for name in names}  # after `if x:`, `try:`
    assert lazy.lazy  # answering did not parse the bodies


def test_a_class_at_the_top_of_the_file_is_parsed_when_its_body_is_first_read():
    lazy = SourceFile.parse("layers.py", big_module(EXTRA_CLASSES), lazy=True)
    classes = {node.name: node for node in lazy.tree.body if isinstance(node, ast.ClassDef)}
    assert type(classes["Short"]) is ast.ClassDef  # one line: nothing to leave for later
    assert all(type(node) is LazyClassDef for name, node in classes.items() if name != "Short")
    assert [base.id for base in classes["Decoder"].bases] == ["Encoder"]  # its header is parsed: bases known
    assert [d.id for d in classes["Config"].decorator_list] == ["dataclass"]
    methods = [node for node in classes["Decoder"].body if isinstance(node, ast.FunctionDef)]
    assert type(classes["Decoder"]) is ast.ClassDef and [m.name for m in methods] == ["forward"]
    assert all(isinstance(method, LAZY) for method in methods)  # its methods' bodies wait for their own read
    assert type(classes["Encoder"]) is LazyClassDef and type(classes["Config"]) is LazyClassDef
    whole = SourceFile.parse("layers.py", big_module(EXTRA_CLASSES))
    assert dump(lazy.complete().tree) == dump(whole.tree)


# classes of several shapes: a one-line class, a header over several lines, a decorated class, imports in a
# method's first line and in the class body
EXTRA_CLASSES = '''

class Decoder(Encoder):
    """Decodes."""

    def forward(self, x):
        import math
        return math.floor(x)


class Short: pass


class Table(
    object,
):
    rows = [
        "a",
    ]
    import os

    def row(self, i):
        from os import path; return self.rows[i]


@dataclass
class Config:
    width: int = 4
    depth: int = 2
'''

# shapes the line scan takes for the end of a class: lines at column 0 in its docstring, in its brackets, or in
# the docstring of one of its methods (the class is then scanned method by method with the rest of the file)
TRAPS = [
    EXTRA_CLASSES.replace('"""Decodes."""', '"""Decodes.\n\nNot indented: still the docstring.\n"""'),
    EXTRA_CLASSES.replace('rows = [\n        "a",\n    ]', 'rows = [\n"a",\n]'),
    EXTRA_CLASSES.replace("def forward(self, x):\n        import math",
                          'def forward(self, x):\n        """Floors.\n\nclass NotAClass:\n"""\n        import math'),
]


@pytest.mark.parametrize("extra", [EXTRA_CLASSES, *TRAPS])
def test_classes_read_lazily_give_the_whole_parse_and_its_imports(extra):
    text = big_module(extra)
    assert extra in text
    lazy = SourceFile.parse("layers.py", text, lazy=True)
    whole = SourceFile.parse("layers.py", text)
    names = lambda source: sorted((n.lineno, [a.name for a in n.names]) for n in source.imports)  # noqa: E731
    assert names(lazy) == names(whole)
    assert lazy.lazy
    assert dump(lazy.complete().tree) == dump(whole.tree)


@pytest.mark.parametrize("text", [
    "x = 1\n" * 10,  # small: parsed whole
    "def f():\n\tx = 1\n\treturn x\n" + "y = 2\n" * 300,  # tab indentation
    "def f():\r\n    return 1\r\n" + "y = 2\r\n" * 300,  # CRLF
])
def test_texts_a_line_scan_should_not_be_trusted_with_are_parsed_whole(text):
    assert not SourceFile.parse("m.py", text, lazy=True).lazy


def test_a_body_that_continues_a_bracket_at_column_0_is_parsed_whole():
    text = "def f():\n    x = [\n1, 2]\n    return x\n" + "y = 2\n" * 300
    source = SourceFile.parse("m.py", text, lazy=True)
    assert not source.lazy and source.tree is not None and source.syntax_error is None


def test_a_deeply_nested_body_read_late_parses_as_deep_as_a_whole_parse(monkeypatch):
    deep = "x" + " + x" * 3000  # a left-deep tree 3,000 operations down
    text = big_module(f"\n\ndef deep(x):\n    return {deep}\n")
    lazy = SourceFile.parse("layers.py", text, lazy=True)
    assert lazy.lazy
    function = next(node for node in lazy.tree.body if isinstance(node, ast.FunctionDef) and node.name == "deep")
    monkeypatch.setattr("sys.getrecursionlimit", lambda: 1000)  # read where the limit is Python's default
    assert len(function.body) == 1 and isinstance(function.body[0], ast.Return)


def test_a_text_that_does_not_parse_reports_the_whole_parse_error():
    text = "def f():\n    return (\n" + "y = 2\n" * 300
    source = SourceFile.parse("m.py", text, lazy=True)
    assert source.tree is None and source.syntax_error is not None


TRAIN = """
import torch
from layers import Encoder

model = Encoder()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(2, 4)
loss = model(x).sum()
loss.backward()
opt.step()
"""


def findings(tmp_path, monkeypatch, whole: bool):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "layers.py").write_text(big_module(EXTRA_CLASSES))
    train = tmp_path / "train.py"
    train.write_text(TRAIN)
    if whole:
        monkeypatch.setattr(skeleton, "MIN_LINES", 10**9)
    project = Project(str(tmp_path))
    result = check_source(train.read_text(), str(train), project=project)
    layers = project.source(str(tmp_path / "layers.py"), lazy=True)
    return [(f.code, f.line, f.message) for f in result.findings], layers.lazy, layers


def test_an_imported_class_parsed_lazily_reports_what_a_whole_parse_does(tmp_path, monkeypatch):
    reported, still_lazy, layers = findings(tmp_path, monkeypatch, whole=False)
    assert still_lazy  # the fillers were never read
    assert any("detach" in message for _, _, message in reported), reported
    encoder = next(node for node in layers.tree.body if isinstance(node, ast.ClassDef) and node.name == "Encoder")
    methods = {node.name: node for node in encoder.body if isinstance(node, ast.FunctionDef)}
    assert type(methods["forward"]) is ast.FunctionDef and type(methods["__init__"]) is ast.FunctionDef
    assert isinstance(methods["scale"], LAZY)  # nothing about `self` in it: the class's facts need no parse
    unused = [node for node in layers.tree.body if isinstance(node, ast.ClassDef) and node.name in ("Decoder", "Table")]
    assert len(unused) == 2 and all(type(node) is LazyClassDef for node in unused)  # never read: never parsed
    monkeypatch.undo()
    assert findings(tmp_path, monkeypatch, whole=True)[:2] == (reported, False)


BASE = '''
import torch.nn as nn


class Base(nn.Module):
    def __init__(self):
        super().__init__()
        self.label = "base"

    def describe(self):
        return self.label.upper()

    def run_head(self, x):
        return self.head(x)
'''

SUBCLASS = """
import torch.nn as nn
from base import Base


class Net(Base):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 2)
        self.tail = nn.Linear(2, 2)

    def forward(self, x):
        return self.run_head(x)
"""


def unused_layers(tmp_path, monkeypatch, whole: bool):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "base.py").write_text(textwrap.dedent(BASE) + big_module())
    net = tmp_path / "net.py"
    net.write_text(SUBCLASS)
    if whole:
        monkeypatch.setattr(skeleton, "MIN_LINES", 10**9)
    project = Project(str(tmp_path))
    result = check_source(net.read_text(), str(net), project=project)
    base = project.source(str(tmp_path / "base.py"), lazy=True)
    return [(f.code, f.line) for f in result.findings if f.code == "GT119"], base


def test_a_base_class_in_another_file_is_asked_only_about_the_attributes_in_question(tmp_path, monkeypatch):
    """The layer a base class's method reads is used; the other is not. The base's method that names neither
    (and stores nothing on `self`) is never parsed, and the answer is the one a whole parse gives."""
    reported, base = unused_layers(tmp_path, monkeypatch, whole=False)
    assert reported == [("GT119", 10)]  # `self.tail`; `self.head` is read by Base.run_head
    cls = next(node for node in base.tree.body if isinstance(node, ast.ClassDef) and node.name == "Base")
    methods = {node.name: node for node in cls.body if isinstance(node, (ast.FunctionDef, *LAZY))}
    assert isinstance(methods["describe"], LAZY)
    assert type(methods["run_head"]) is ast.FunctionDef
    monkeypatch.undo()
    assert unused_layers(tmp_path, monkeypatch, whole=True)[0] == reported
