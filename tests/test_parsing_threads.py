"""Several threads parse at once in the language server (analysis, hover, probes). On CPython 3.11 a tree built
while the garbage collector runs a finalizer and another thread builds one can raise "SystemError: AST constructor
recursion depth mismatch" (CPython gh-106905; it failed a concurrent probe of ours). Every parse of gradtrace goes
through `gradtrace.parsing.parse`, which builds one tree at a time: the same storm raises nothing."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

from gradtrace import parsing

ROOT = Path(__file__).resolve().parents[1] / "server" / "gradtrace"


class _Cycle:
    """Garbage that only the cycle collector frees, with a finalizer: runs Python code in the middle of a parse."""

    def __init__(self):
        self.me = self

    def __del__(self):
        pass


def storm(parse, threads: int = 4, rounds: int = 8) -> list[str]:
    source = (ROOT / "analysis" / "source.py").read_text(encoding="utf-8") * 3
    errors: list[str] = []

    def work():
        for _ in range(rounds):
            try:
                parse(source)
            except SystemError as error:
                errors.append(str(error))
            for _ in range(200):
                _Cycle()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return errors


def test_parsing_from_many_threads_with_finalizers_running_raises_nothing():
    assert storm(parsing.parse) == []


def test_it_parses_what_ast_parses():
    text = "def f(x):\n    return x + 1\n"
    assert ast.dump(parsing.parse(text, "f.py")) == ast.dump(ast.parse(text, "f.py"))


def test_no_parse_of_the_server_bypasses_it():
    """The probe's runtime runs alone in the user's interpreter and keeps `ast.parse`; everything else uses the lock."""
    direct = []
    for path in ROOT.rglob("*.py"):
        if "probe/runtime" in path.as_posix() or path.name == "parsing.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "ast.parse(" in line and not line.lstrip().startswith("#"):
                direct.append(f"{path.relative_to(ROOT)}:{number}")
    assert direct == []
