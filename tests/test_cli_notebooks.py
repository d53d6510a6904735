"""`gradtrace check` on Jupyter notebooks, its GitHub and statistics output, `-j`, the pre-commit hook and the
subcommand layout; run as a user runs them (`python -m gradtrace ...` in a subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "tests", "data", "notebooks", "train.ipynb")
# tests/data/notebooks/train.ipynb: a markdown cell, then the model (cell 2, starting with a %magic), then the
# training in cell 3, whose line 5 detaches the encoder's output.


def gradtrace(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "gradtrace", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=180)


@pytest.fixture
def notebook(tmp_path):
    path = tmp_path / "train.ipynb"
    shutil.copy(NOTEBOOK, path)
    return path


def test_notebook_findings_are_addressed_by_cell(notebook):
    proc = gradtrace("check", "--no-cache", str(notebook))
    assert proc.returncode == 1, proc.stderr
    assert f"{notebook}:cell 3:5:19: GT105 [warning]" in proc.stdout
    assert "Found 1 finding in 1 file." in proc.stdout


def test_notebook_json_has_the_cell_and_cell_relative_lines(notebook):
    proc = gradtrace("check", "--no-cache", "--format", "json", str(notebook))
    (finding,) = json.loads(proc.stdout)
    assert (finding["cell"], finding["line"], finding["column"], finding["code"]) == (3, 5, 19, "GT105")
    assert list(finding)[:2] == ["path", "cell"]
    (edit,) = finding["fix"]["edits"]
    assert (edit["cell"], edit["line"]) == (3, 5)
    encoder = next(r for r in finding["related"] if "encoder" in r["message"])
    assert (encoder["cell"], encoder["line"]) == (2, 8)  # `self.encoder = ...` in the model cell


def test_notebook_sarif_region_is_in_the_cell(notebook):
    proc = gradtrace("check", "--no-cache", "--format", "sarif", str(notebook))
    (result,) = json.loads(proc.stdout)["runs"][0]["results"]
    location = result["locations"][0]
    assert location["properties"] == {"cell": 3}
    assert location["physicalLocation"]["region"]["startLine"] == 5
    assert location["physicalLocation"]["artifactLocation"]["uri"].endswith("train.ipynb")


def test_fix_writes_the_notebook_back_keeping_outputs_and_metadata(notebook):
    before = json.loads(notebook.read_text())
    proc = gradtrace("check", "--no-cache", "--fix", str(notebook))
    assert "Applied 1 fix." in proc.stdout, proc.stdout + proc.stderr
    after = json.loads(notebook.read_text())
    assert after["cells"][2]["source"][4] == "loss = model.head(latent).sum()\n"
    assert after["cells"][1]["source"][0] == "%matplotlib inline\n"  # the magic is kept as it was
    for key in ("metadata", "nbformat", "nbformat_minor"):
        assert after[key] == before[key]
    for old, new in zip(before["cells"], after["cells"]):
        assert {k: v for k, v in old.items() if k != "source"} == {k: v for k, v in new.items() if k != "source"}
    changed = [n for n, (a, b) in enumerate(zip(before["cells"], after["cells"])) if a["source"] != b["source"]]
    assert changed == [2]
    again = gradtrace("check", "--no-cache", "--fix", str(notebook))
    assert again.returncode == 0 and "Found 0 findings" in again.stdout


def test_directories_include_notebooks_and_broken_ones_are_skipped_with_a_reason(tmp_path, notebook):
    (tmp_path / "not_json.ipynb").write_text("{ this is not json")
    (tmp_path / "r.ipynb").write_text(json.dumps({"cells": [], "metadata": {"kernelspec": {"language": "R"}}}))
    proc = gradtrace("check", "--no-cache", "--format", "json", str(tmp_path))
    by_file = {(os.path.basename(f["path"]), f["code"]): f for f in json.loads(proc.stdout)}
    assert ("train.ipynb", "GT105") in by_file
    assert "invalid JSON" in by_file[("not_json.ipynb", "GT001")]["message"]
    assert "not a Python notebook" in by_file[("r.ipynb", "GT001")]["message"]


def test_a_cell_that_does_not_parse_keeps_the_others_findings(notebook):
    data = json.loads(notebook.read_text())
    data["cells"].insert(1, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                             "source": ["def broken(:\n", "    pass\n"]})
    notebook.write_text(json.dumps(data, indent=1))
    proc = gradtrace("check", "--no-cache", str(notebook))
    try:
        compile("def broken(:\n    pass\n", "cell", "exec")
    except SyntaxError as exc:
        column = exc.offset
    assert f"{notebook}:cell 2:1:{column}: GT000 [error]" in proc.stdout
    assert f"{notebook}:cell 4:5:19: GT105" in proc.stdout


def test_a_shell_escape_continued_with_a_backslash_is_not_a_syntax_error(notebook):
    """IPython joins `!cmd \\` with the line after it; the continuation is part of the shell command."""
    data = json.loads(notebook.read_text())
    data["cells"].insert(1, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                             "source": ["!saved_model_cli show --dir model \\\n",
                                        "                      --tag_set serve\n", "x = 1\n"]})
    notebook.write_text(json.dumps(data, indent=1))
    proc = gradtrace("check", "--no-cache", str(notebook))
    assert "GT000" not in proc.stdout
    assert f"{notebook}:cell 4:5:19: GT105" in proc.stdout


def test_github_annotations(notebook, tmp_path):
    script = tmp_path / "train.py"
    shutil.copy(os.path.join(ROOT, "fixtures", "torch", "bad_detach.py"), script)
    proc = gradtrace("check", "--no-cache", "--format", "github", "train.py", "train.ipynb", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1 and len(lines) == 2, proc.stdout
    assert lines[0].startswith("::warning file=train.ipynb,line=5,col=19,endLine=5,endColumn=34,"
                               "title=gradtrace (GT105)::train.ipynb:cell 3:5:19: GT105 ")
    assert lines[1].startswith("::warning file=train.py,line=15,col=29,")
    assert "%0A" not in lines[1] and "\n" not in lines[1]


def test_statistics(tmp_path):
    for name in ("bad_detach.py", "bad_optimizer.py"):
        shutil.copy(os.path.join(ROOT, "fixtures", "torch", name), tmp_path / name)
    shutil.copy(tmp_path / "bad_detach.py", tmp_path / "again.py")
    proc = gradtrace("check", "--no-cache", "--statistics", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == ["2  GT105  [*] detach-on-loss-path", "1  GT118      optimizer-mismatch"]
    rows = json.loads(gradtrace("check", "--no-cache", "--statistics", "--format", "json", str(tmp_path)).stdout)
    assert rows[0] == {"code": "GT105", "name": "detach-on-loss-path", "count": 2, "fixable": True}


def test_jobs_default_to_the_cores():
    sys.path.insert(0, os.path.join(ROOT, "server"))
    from gradtrace.commands.check import default_jobs

    assert default_jobs() == len(os.sched_getaffinity(0))
    help_text = gradtrace("check", "--help").stdout
    assert "default: the number of cores" in help_text


def test_pre_commit_hook_checks_python_and_notebooks():
    yaml = pytest.importorskip("yaml")
    with open(os.path.join(ROOT, ".pre-commit-hooks.yaml"), encoding="utf-8") as fh:
        (hook,) = yaml.safe_load(fh)
    assert hook["id"] == "gradtrace" and hook["language"] == "python"
    assert set(hook["types_or"]) == {"python", "pyi", "jupyter"}
    assert hook["entry"].split()[:2] == ["gradtrace", "check"]


@pytest.mark.slow
def test_pre_commit_runs_the_hook_on_python_and_notebook_files(tmp_path):
    """pre-commit itself installs the hook from this repository (a fresh environment, as users get it) and
    runs it on a staged script and notebook."""
    pre_commit = shutil.which("pre-commit") or os.path.join(os.path.dirname(sys.executable), "pre-commit")
    if not os.path.exists(pre_commit):
        pytest.skip("pre-commit is not installed (pip install pre-commit)")
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(NOTEBOOK, repo / "train.ipynb")
    shutil.copy(os.path.join(ROOT, "fixtures", "torch", "bad_detach.py"), repo / "model.py")
    env = {"PRE_COMMIT_HOME": str(tmp_path / "cache"), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    proc = subprocess.run([pre_commit, "try-repo", ROOT, "gradtrace", "--files", "model.py", "train.ipynb"],
                          cwd=repo, capture_output=True, text=True, timeout=900, env={**os.environ, **env})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "model.py:15:29: GT105" in proc.stdout and "train.ipynb:cell 3:5:19: GT105" in proc.stdout


def test_every_subcommand_lives_in_commands_and_the_server_starts_without_the_checker():
    for name in ("check", "probe", "server", "rules"):
        proc = gradtrace(name, "--help")
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: gradtrace {name}"), proc.stderr
    assert "--graph OUT" in gradtrace("probe", "--help").stdout
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "gradtrace", "server"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "gradtrace.lsp.server" in imported
    assert not imported & {"gradtrace.commands.check", "gradtrace.probe.launcher", "libcst", "jedi"}, \
        sorted(imported & {"gradtrace.commands.check", "gradtrace.probe.launcher", "libcst", "jedi"})
