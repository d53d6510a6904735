"""The CLI contract (DESIGN §3), run as a user runs it: `python -m gradtrace ...` in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from gradtrace.settings import LintSettings, load_pyproject_settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "fixtures")
KEYS = {"path", "line", "column", "end_line", "end_column", "code", "severity", "message", "fix"}


def gradtrace(*args, cwd=None):
    env = dict(os.environ, GRADTRACE_CACHE_DIR=os.path.join(cwd or ROOT, ".gt-cache-test"))
    return subprocess.run([sys.executable, "-m", "gradtrace", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def check_json(*args, cwd=None):
    proc = gradtrace("check", "--format", "json", "--no-cache", *args, cwd=cwd)
    return proc, json.loads(proc.stdout)


def test_json_findings_follow_the_contract():
    proc, data = check_json(os.path.join(FIXTURES, "torch", "bad_detach.py"))
    assert proc.returncode == 1
    assert len(data) == 1
    finding = data[0]
    assert KEYS <= set(finding)
    assert finding["code"] == "GT105" and finding["severity"] == "warning"
    assert finding["line"] == 15 and finding["column"] == 29
    assert "`model.encoder` gets no gradient" in finding["message"]
    assert finding["fix"]["safe"] is True
    edit = finding["fix"]["edits"][0]
    assert {"line", "column", "end_line", "end_column", "text"} == set(edit)


def test_clean_file_exits_zero_and_prints_empty_array():
    proc, data = check_json(os.path.join(FIXTURES, "torch", "good_training_loop.py"))
    assert (proc.returncode, data) == (0, [])


def test_good_fixtures_have_no_warnings_and_bad_fixtures_do():
    proc, data = check_json(FIXTURES)
    by_file: dict[str, list] = {}
    for f in data:
        by_file.setdefault(os.path.basename(f["path"]), []).append(f)
    for _directory, _, files in os.walk(FIXTURES):
        for name in files:
            if not name.endswith(".py"):
                continue
            serious = [f for f in by_file.get(name, []) if f["severity"] in ("warning", "error")]
            if name.startswith("good_"):
                assert serious == [], (name, serious)
            elif name.startswith("bad_"):
                assert serious, f"{name} has no warning or error"


def test_two_file_project_reports_the_cut_in_both_files():
    project = os.path.join(FIXTURES, "project")
    proc, data = check_json(os.path.join(project, "train.py"))
    assert [f["code"] for f in data] == ["GT105"]
    train = data[0]
    assert train["line"] == 14  # the call that leads into model.py
    assert "model.py" in train["message"] and "`model.encoder`" in train["message"]
    assert any(r["path"].endswith("model.py") and r["line"] == 14 for r in train["related"])
    proc, data = check_json(os.path.join(project, "model.py"))
    assert [(f["code"], f["line"]) for f in data] == [("GT105", 14)]


def test_text_format_and_summary():
    proc = gradtrace("check", "--no-cache", os.path.join(FIXTURES, "torch", "bad_optimizer.py"))
    assert proc.returncode == 1
    assert "bad_optimizer.py:8:9: GT118 [warning]" in proc.stdout
    assert "Found 1 finding in 1 file." in proc.stdout


def test_sarif_output_is_valid_shape():
    proc = gradtrace("check", "--format", "sarif", "--no-cache", os.path.join(FIXTURES, "torch", "bad_inplace.py"))
    sarif = json.loads(proc.stdout)
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    assert run["tool"]["driver"]["name"] == "gradtrace"
    assert {r["ruleId"] for r in run["results"]} == {"GT120", "GT121"}
    assert all(r["level"] == "error" for r in run["results"])
    assert any(rule["id"] == "GT120" for rule in run["tool"]["driver"]["rules"])


def test_select_and_ignore():
    path = os.path.join(FIXTURES, "torch", "bad_registration.py")
    _, data = check_json("--select", "GT115", path)
    assert {f["code"] for f in data} == {"GT115"}
    _, data = check_json("--ignore", "GT115,GT119", path)
    assert {f["code"] for f in data} == {"GT114"}
    proc = gradtrace("check", "--select", "XX1", path)
    assert proc.returncode == 2 and "not a rule code" in proc.stderr


def test_noqa_suppresses_only_the_named_code(tmp_path):
    src = open(os.path.join(FIXTURES, "torch", "bad_leaf_mistakes.py")).read()
    src = src.replace("bias.require_grad = True", "bias.require_grad = True  # noqa: GT116")
    path = tmp_path / "leaf.py"
    path.write_text(src)
    _, data = check_json(str(path))
    assert [f["code"] for f in data] == ["GT112"]


def test_pyproject_configuration(tmp_path):
    shutil.copy(os.path.join(FIXTURES, "torch", "bad_registration.py"), tmp_path / "model.py")
    (tmp_path / "pyproject.toml").write_text('[tool.gradtrace]\nignore = ["GT119"]\n'
                                             '[tool.gradtrace.per-file-ignores]\n"model.py" = ["GT114"]\n')
    _, data = check_json(str(tmp_path))
    assert {f["code"] for f in data} == {"GT115"}
    (tmp_path / "pyproject.toml").write_text('[tool.gradtrace]\nselect = "GT9999x"\n')
    proc = gradtrace("check", str(tmp_path))
    assert proc.returncode == 2 and "tool.gradtrace.select" in proc.stderr


@pytest.mark.parametrize("table", [
    '[tool.gradtrace]\nignore = ["GT119"]\n',
    '[ tool . "gradtrace" ]\nignore = ["GT119"]\n',
    'tool.gradtrace.ignore = ["GT119"]\n',
    "tool = {gradtrace = {ignore = ['GT119']}}\n",
    '[tool]\ngradtrace = {ignore = ["GT119"]}\n',
    "['tool']\n'gradtrace'.ignore = ['GT119']\n",
])
def test_pyproject_table_in_every_toml_spelling(tmp_path, table):
    """However TOML spells `tool.gradtrace`, and whatever else the file says about gradtrace, it is read."""
    (tmp_path / "pyproject.toml").write_text(  # the table first: a dotted key after a header belongs to that table
        table + '[project]\nname = "demo"\ndependencies = ["gradtrace"]\n[project.scripts]\ngradtrace = "x:y"\n')
    settings, warning = load_pyproject_settings(str(tmp_path / "model.py"))
    assert warning is None and settings.ignore == ("GT119",)


def test_pyproject_naming_gradtrace_without_its_table(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "gradtrace"\ndependencies = ["gradtrace"]\n[project.scripts]\ngradtrace = "x:y"\n'
        '[tool.ruff]\nline-length = 100\n[tool.setuptools.package-data]\ngradtrace = ["*.md"]\n')
    settings, warning = load_pyproject_settings(str(tmp_path / "model.py"))
    assert warning is None and settings == LintSettings()


def test_fix_applies_safe_fixes_and_is_idempotent(tmp_path):
    shutil.copy(os.path.join(FIXTURES, "torch", "bad_registration.py"), tmp_path / "model.py")
    proc = gradtrace("check", "--fix", str(tmp_path / "model.py"))
    fixed = (tmp_path / "model.py").read_text()
    assert "nn.ModuleList([nn.Sequential(" in fixed
    assert "nn.Parameter(torch.ones(dim))" in fixed
    assert proc.returncode == 1  # the unused layer has no automatic fix and is still reported
    again = gradtrace("check", "--fix", str(tmp_path / "model.py"))
    assert (tmp_path / "model.py").read_text() == fixed
    assert "GT119" in again.stdout and "GT115" not in again.stdout


def test_bad_input_never_crashes(tmp_path):
    (tmp_path / "broken.py").write_text("import torch\nx = torch.randn(3\n")
    (tmp_path / "binary.py").write_bytes(b"\x00\x01\x02torch")
    (tmp_path / "latin.py").write_bytes("# caf\xe9\nimport torch\n".encode("latin-1"))
    shutil.copy(os.path.join(FIXTURES, "torch", "bad_detach.py"), tmp_path / "ok.py")
    proc, data = check_json(str(tmp_path))
    assert "Traceback" not in proc.stderr
    codes = {(os.path.basename(f["path"]), f["code"]) for f in data}
    assert ("broken.py", "GT000") in codes
    assert ("binary.py", "GT001") in codes and ("latin.py", "GT001") in codes
    assert ("ok.py", "GT105") in codes  # the other files are still checked
    syntax = next(f for f in data if f["code"] == "GT000")
    assert syntax["line"] == 2 and "not analysed" in syntax["message"]


def test_missing_path_exits_2():
    proc = gradtrace("check", "no/such/file.py")
    assert proc.returncode == 2
    assert "no such file or directory" in proc.stderr and "Traceback" not in proc.stderr


def test_rules_command_lists_and_documents():
    proc = gradtrace("rules")
    assert proc.returncode == 0 and "GT105" in proc.stdout and "detach-on-loss-path" in proc.stdout
    proc = gradtrace("rules", "GT105")
    assert "## Why is this bad?" in proc.stdout and "## Fix safety" in proc.stdout
    proc = gradtrace("rules", "GT999")
    assert proc.returncode == 2


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_parallel_and_cached_runs_agree(tmp_path, jobs):
    for name in os.listdir(os.path.join(FIXTURES, "torch")):
        shutil.copy(os.path.join(FIXTURES, "torch", name), tmp_path / name)
    first = gradtrace("check", "--format", "json", "-j", jobs, str(tmp_path), cwd=str(tmp_path))
    second = gradtrace("check", "--format", "json", "-j", jobs, str(tmp_path), cwd=str(tmp_path))
    assert json.loads(first.stdout) == json.loads(second.stdout)
    assert first.returncode == second.returncode == 1


def test_readme_lists_every_rule_and_starts_with_the_two_commands():
    from gradtrace.rules import all_rules

    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    for rule in all_rules():
        assert f"`{rule.code}`" in readme, f"README does not list {rule.code}: run scripts/update_readme_rules.py"
    block = readme.split("```")[1]
    commands = [ln for ln in block.splitlines()[1:] if ln.strip()]
    assert [c.split()[1] for c in commands] == ["scripts/demo.sh", "scripts/test.sh"]
