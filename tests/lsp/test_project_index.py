"""The project index: module names and paths, imports and importers, per document version."""

from __future__ import annotations

import os

from gradtrace.analysis.project_index import ProjectIndex, import_statements


def write(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


PACKAGE = {
    "pyproject.toml": "[project]\nname = 'p'\n",
    "src/pkg/__init__.py": "",
    "src/pkg/layers.py": "import torch\n",
    "src/pkg/model.py": "from .layers import *\nfrom . import layers\n",
    "src/pkg/heads/__init__.py": "",
    "src/pkg/heads/linear.py": "from ..model import Net\nimport pkg.layers as L\n",
    "train.py": "import torch\nfrom pkg import model\nfrom pkg.heads import (\n    linear,  # the head\n)\n",
}


def indexed(tmp_path) -> ProjectIndex:
    write(tmp_path, PACKAGE)
    index = ProjectIndex(str(tmp_path))
    index.update(str(tmp_path / "train.py"), PACKAGE["train.py"])
    index.follow(str(tmp_path / "train.py"))
    return index


def test_names_and_paths(tmp_path):
    index = indexed(tmp_path)
    assert index.module_name(str(tmp_path / "src/pkg/heads/linear.py")) == "pkg.heads.linear"
    assert index.module_name(str(tmp_path / "src/pkg/__init__.py")) == "pkg"
    assert index.module_name(str(tmp_path / "train.py")) == "train"
    assert index.module_name("/elsewhere/x.py") is None
    assert index.path_of("pkg.model") == str(tmp_path / "src/pkg/model.py")


def test_imports_and_importers(tmp_path):
    index = indexed(tmp_path)
    assert index.imports_of("train") == {"pkg", "pkg.model", "pkg.heads", "pkg.heads.linear"}
    assert index.imports_of("pkg.heads.linear") == {"pkg.model", "pkg.layers"}  # relative and absolute
    assert index.imports_of("pkg.model") == {"pkg", "pkg.layers"}
    assert index.importers_of("pkg.layers") == {"pkg.model", "pkg.heads.linear"}
    assert index.importers_of("pkg.layers", transitive=True) == {"pkg.model", "pkg.heads.linear", "train"}
    assert "torch" not in str(index.imports_of("pkg.layers"))  # only the project's own modules


def test_a_new_version_of_a_document_updates_its_edges(tmp_path):
    index = indexed(tmp_path)
    train = str(tmp_path / "train.py")
    assert index.update(train, PACKAGE["train.py"]) is False  # same text
    assert index.update(train, PACKAGE["train.py"] + "x = 1\n") is False  # same imports
    assert index.update(train, "import torch\n") is True
    assert index.importers_of("pkg.model") == {"pkg.heads.linear"}
    index.forget(str(tmp_path / "src/pkg/heads/linear.py"))
    assert index.importers_of("pkg.model") == set()


def test_dependency_order_puts_modules_before_their_importers(tmp_path):
    index = indexed(tmp_path)
    paths = [str(tmp_path / name) for name in ("train.py", "src/pkg/heads/linear.py", "src/pkg/model.py",
                                                  "src/pkg/layers.py")]
    order = index.dependency_order(paths)
    assert sorted(order) == sorted(paths)
    assert order.index(paths[3]) < order.index(paths[2]) < order.index(paths[1]) < order.index(paths[0])


def test_cycles_and_unreadable_files_end(tmp_path):
    write(tmp_path, {"a.py": "import b\n", "b.py": "import a\n"})
    os.mkfifo(tmp_path / "c.py")
    index = ProjectIndex(str(tmp_path))
    for name in ("a.py", "b.py", "c.py"):
        index.index_file(str(tmp_path / name))
    assert index.importers_of("a", transitive=True) == {"b"}
    assert sorted(index.dependency_order([str(tmp_path / n) for n in ("a.py", "b.py")])) == \
        [str(tmp_path / "a.py"), str(tmp_path / "b.py")]
    assert index.imports_of("c") == frozenset()


def test_import_statements_are_parsed_even_when_the_file_is_not():
    text = "import torch\nfrom .model import (\n  Net,\n  Head)\ndef broken(:\n    import json\n"
    assert [(type(n).__name__, getattr(n, "module", None)) for n in import_statements(text)] == [
        ("Import", None), ("ImportFrom", "model"), ("Import", None)]
