"""Cross-file resolution: project modules are found; packages that are not in the project cost no jedi query."""

import sys

from gradtrace.analysis.project import Project


def write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_module_beside_the_importer_and_under_src_resolve(tmp_path):
    write(tmp_path / "pyproject.toml")
    model = write(tmp_path / "src" / "mypkg" / "model.py", "class Net: ...\n")
    write(tmp_path / "src" / "mypkg" / "__init__.py")
    helper = write(tmp_path / "scripts" / "helpers.py")
    train = write(tmp_path / "scripts" / "train.py", "from mypkg.model import Net\n")
    project = Project(str(tmp_path))
    assert project.resolve_module(str(train), "mypkg.model") == str(model)
    assert project.resolve_module(str(train), "helpers") == str(helper)


def test_a_package_absent_from_the_project_is_not_looked_up_with_jedi(tmp_path, monkeypatch):
    asked = []

    class Recording:
        def __getattr__(self, name):
            asked.append(name)
            raise RuntimeError("no jedi here")

    monkeypatch.setitem(sys.modules, "jedi", Recording())
    write(tmp_path / "pyproject.toml")
    write(tmp_path / "lib" / "ourpkg" / "__init__.py")
    train = write(tmp_path / "train.py", "from timm.layers import Mlp\n")
    project = Project(str(tmp_path))
    assert project.resolve_module(str(train), "timm.layers") is None
    assert asked == []
    assert project.resolve_module(str(train), "ourpkg") is None  # present, in a layout only jedi may know
    assert asked  # so jedi was asked
    assert "ourpkg" in project.project_names() and "timm" not in project.project_names()
