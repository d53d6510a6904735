import os
import re

import pytest

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def data(name: str) -> str:
    return os.path.join(DATA, name)


def cut_line(path: str) -> int:
    """The line marked `# CUT` in a data file."""
    with open(path) as fh:
        for n, text in enumerate(fh, start=1):
            if re.search(r"#\s*CUT\b", text):
                return n
    raise AssertionError(f"no # CUT marker in {path}")


@pytest.fixture(scope="session")
def launcher():
    pytest.importorskip("torch")
    from gradtrace.probe.launcher import ProbeLauncher

    lau = ProbeLauncher()
    yield lau
    lau.shutdown()


@pytest.fixture(scope="module")
def module_launcher():
    """A launcher of this test module's own (its workers go with the module)."""
    from gradtrace.probe.launcher import ProbeLauncher

    lau = ProbeLauncher()
    yield lau
    lau.shutdown()


@pytest.fixture(scope="session")
def project(tmp_path_factory):
    """One project for the scripts the tests write: the launcher keeps one warm worker per project."""
    root = tmp_path_factory.mktemp("project")
    (root / "pyproject.toml").write_text("[project]\nname = 'probed-scripts'\n")
    return root


@pytest.fixture
def scripts(project, request):
    """A directory of its own for this test's scripts, inside the shared project."""
    path = project / re.sub(r"\W+", "_", request.node.name)[:100]
    path.mkdir()
    return path
