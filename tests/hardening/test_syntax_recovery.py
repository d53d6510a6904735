"""Findings survive syntax errors: the statement with the error is set aside, the rest is analysed.

Run on the fixtures: a loop header typed one character at a time inside each function keeps every other
finding at every step; GT000 sits where Python's parser points; random damage never crashes the
engine, never moves a line, and never changes a line outside what it set aside.
"""

from __future__ import annotations

import ast
import random
import sys
from pathlib import Path

import pytest
from gradtrace.analysis.recovery import recover
from gradtrace.analysis.source import SourceFile
from gradtrace.engine import check_source
from gradtrace.positions import split_lines

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted(p for p in (ROOT / "fixtures").rglob("*.py") if p.name.startswith("bad_"))
TYPED = "for p in self.parameters():"


def findings(text: str, path: str = "/project/example.py") -> list[tuple]:
    result = check_source(text, path)
    assert not result.errors, result.errors
    return [(f.code, f.line, f.column, f.end_line, f.end_column) for f in result.findings]


def python_error(text: str) -> SyntaxError:
    with pytest.raises(SyntaxError) as info:
        ast.parse(text)
    return info.value


def function_bodies(text: str) -> list[tuple[int, str]]:
    """(0-based line of the first body statement, its indentation) of every function."""
    tree = ast.parse(text)
    lines = split_lines(text)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0].lineno - 1
            out.append((first, lines[first][: len(lines[first]) - len(lines[first].lstrip())]))
    return out


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_typing_a_loop_header_keeps_the_other_findings(fixture):
    text = fixture.read_text(encoding="utf-8")
    clean = findings(text)
    lines = split_lines(text)
    for at, indent in function_bodies(text):
        for end in range(1, len(TYPED) + 1):
            typed = lines[:at] + [indent + TYPED[:end]] + lines[at:]
            broken = "\n".join(typed)
            got = findings(broken)
            shifted = [(c, ln - (ln > at + 1), col, el - (el > at + 1), ec) for c, ln, col, el, ec in got if c != "GT000"]
            assert shifted == [f for f in clean if f[0] != "GT000"], (fixture.name, TYPED[:end])
            try:
                ast.parse(broken)
            except SyntaxError as exc:
                (syntax,) = [f for f in got if f[0] == "GT000"]
                assert syntax[1:3] == (exc.lineno, exc.offset), (TYPED[:end], syntax, exc)
            else:
                assert all(f[0] != "GT000" for f in got)


def test_two_broken_statements_in_different_functions():
    text = (ROOT / "fixtures" / "torch" / "bad_detach.py").read_text(encoding="utf-8")
    clean = findings(text)
    assert clean and all(f[0] == "GT105" for f in clean)
    lines = split_lines(text)
    init = next(i for i, line in enumerate(lines) if "super().__init__()" in line)
    main = next(i for i, line in enumerate(lines) if "torch.manual_seed(0)" in line)
    lines[main] = "    torch.manual_seed(0"  # an unclosed bracket at the top level ...
    lines.insert(init + 1, "        x = = 1")  # ... and invalid syntax in __init__, earlier in the file
    broken = "\n".join(lines)
    got = findings(broken)
    error = python_error(broken)
    assert [f for f in got if f[0] == "GT000"][0][1:3] == (error.lineno, error.offset)
    assert [(c, ln - 1, col) for c, ln, col, *_ in got if c == "GT105"] == [(c, ln, col) for c, ln, col, *_ in clean]


@pytest.mark.parametrize("broken, error_line", [
    ("import torch\nx = '''never closed\ny = torch.ones(1)\n", 2),
    ("import torch\n\ndef f(x):\n  return x\n    y = 1\n", 5),  # unexpected indent
    ("import torch\n\nif True:\n    x = 1\n  y = 2\n", 5),  # unindent does not match
    ("import torch\nx = (1,\n", 2),
    ("import torch\n\nclass A:\n    def f(self:\n        return 1\n", 4),
    ("@decorator\n\ndef f(:\n    pass\n", 3),
    ("x = 1\nelse:\n    y = 2\n", 2),
    ("\t\n" * 3 + "(" * 300 + "\n", 4),
    ("import torch\n\nclass A:\n\tdef f(self):\n\t\tfor p in self.parameters()\n\t\treturn 1\n", 5),  # tabs
])
def test_recovery_ends_and_keeps_every_line_in_place(broken, error_line):
    source = SourceFile.parse("/a.py", broken)
    assert source.syntax_error is not None and source.syntax_error.lineno == error_line
    recovered = source.recovered()
    if recovered is None:
        return  # nothing left that parses: the file gets GT000 alone
    before, after = split_lines(broken), split_lines(recovered.text)
    assert len(before) == len(after)
    for number, (old, new) in enumerate(zip(before, after), start=1):
        if not any(a <= number <= b for a, b in recovered.set_aside):
            assert old == new, number
        else:
            assert new.strip() in ("", "pass")
    ast.parse(recovered.text)


def test_random_damage_never_breaks_the_engine():
    """Delete, duplicate or insert a character anywhere in the fixtures: the engine answers, lines stay put."""
    rng = random.Random(13)
    texts = [p.read_text(encoding="utf-8") for p in FIXTURES]
    for _ in range(120):
        text = rng.choice(texts)
        at = rng.randrange(len(text))
        kind = rng.choice(("delete", "insert", "duplicate"))
        if kind == "delete":
            damaged = text[:at] + text[at + 1:]
        elif kind == "insert":
            damaged = text[:at] + rng.choice("([{:'\"#\\\n ") + text[at:]
        else:
            damaged = text[:at] + text[at:at + 8] + text[at:]
        result = check_source(damaged, "/project/damaged.py")
        assert not result.errors, result.errors
        source = SourceFile.parse("/project/damaged.py", damaged)
        if source.syntax_error is None:
            continue
        assert [f.code for f in result.findings].count("GT000") == 1
        recovered = source.recovered()
        if recovered is not None:
            assert len(split_lines(recovered.text)) == len(split_lines(damaged))


def test_recovery_parses_a_bounded_number_of_times(monkeypatch):
    """200 statements that each open a bracket: recovery stops after MAX_PARSES parses, whatever it found."""
    from gradtrace.analysis import recovery

    lines = [f"x{i} = [" if i % 2 else f"y{i} = (" for i in range(200)]
    text = "\n".join(lines)
    error = python_error(text)
    calls = []
    real_parse = ast.parse
    monkeypatch.setattr(recovery.ast, "parse", lambda *a, **k: calls.append(1) or real_parse(*a, **k))
    recover(lines, error)
    assert 0 < len(calls) <= recovery.MAX_PARSES


def test_the_syntax_error_column_is_counted_on_the_text_not_on_the_file_on_disk(tmp_path):
    """An editor's unsaved text differs from the file: the column must come from the text analysed."""
    path = tmp_path / "model.py"
    path.write_text("import torch\n# é é é é é é é é é é é é é é é é é é é é é é é é é é é é é é é é é\n", encoding="utf-8")
    text = "import torch\nfor p in self.parameters()\n"
    (syntax,) = [f for f in check_source(text, str(path)).findings if f.code == "GT000"]
    assert (syntax.line, syntax.column) == (2, len("for p in self.parameters()") + 1)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="PEP 695 syntax parses on this interpreter")
@pytest.mark.parametrize("text", [
    "type Vec = list[float]\n",
    "def first[T](items: list[T]) -> T:\n    return items[0]\n",
    "class Box[T](Base):\n    pass\n",
    "def register():\n    def wrapper[T: Callable[..., Any]](fn: T) -> T:\n        return fn\n    return wrapper\n",
])
def test_newer_python_syntax_is_skipped_not_called_a_mistake(text):
    assert [f.code for f in check_source(text, "/project/new.py").findings] == ["GT001"]


@pytest.mark.parametrize("text", [
    "def forward[(self, x):\n    return x\n",            # a typo that looks half like a generic
    "x = (\ntype Vec = list[float]\n",                   # an open bracket before an alias line
    "class Box[T\n    pass\n",                            # a type parameter list never closed
])
def test_a_typo_near_newer_syntax_is_still_a_syntax_error(text):
    codes = [f.code for f in check_source(text, "/project/typo.py").findings]
    assert codes.count("GT000") == 1 and "GT001" not in codes
