"""The language server's pure helpers: position conversion, editor settings, noqa edits, fixAll, relocation."""

from __future__ import annotations

import pytest
from gradtrace.analysis.suppressions import code_at
from gradtrace.findings import Edit, Finding, Fix
from gradtrace.lsp.code_actions import fix_all_edit, noqa_edit
from gradtrace.lsp.config import SettingsStore, extract_settings
from gradtrace.lsp.diagnostics import LineMap, to_diagnostic
from gradtrace.lsp.hover import dotted_at
from gradtrace.lsp.relocation import relocate
from gradtrace.lsp.worker import run_fix_all
from gradtrace.notebooks import neutralise as _neutralise
from gradtrace.positions import lsp_to_point, span_to_lsp, split_lines
from gradtrace.settings import LintSettings, server_settings_from_mapping
from lsprotocol import types

LINE = 's = "😋é"; y = x.detach()'  # one astral character, one 2-byte character
COL = LINE.index("x.detach()") + 1  # 1-based code points


@pytest.mark.parametrize(("encoding", "start"), [("utf-16", COL - 1 + 1), ("utf-8", COL - 1 + 3 + 1), ("utf-32", COL - 1)])
def test_span_to_lsp_per_encoding(encoding, start):
    assert span_to_lsp([LINE], 1, COL, 1, COL + 10, encoding) == (0, start, 0, start + 10)
    assert lsp_to_point([LINE], 0, start, encoding) == (1, COL)


def test_span_to_lsp_clamps():
    lines = split_lines("ab\ncd")
    assert span_to_lsp(lines, 1, 1, 9, 1, "utf-16") == (0, 0, 1, 2)  # past the end: the end
    assert span_to_lsp(lines, 2, 5, 2, 9, "utf-16") == (1, 2, 1, 2)  # past the line: its end
    assert span_to_lsp(lines, 2, 2, 1, 1, "utf-16") == (1, 1, 1, 1)  # end before start: collapsed
    assert lsp_to_point(lines, 7, 0, "utf-16") == (2, 3)


def test_notebook_line_map_cuts_spans_at_the_cell_end():
    where = LineMap("nb", "/nb.ipynb", ["a = 1", "b = 2", "c = 3"], cells=[(1, 2, "cell0"), (3, 1, "cell1")])
    uri, rng = where.to_range(2, 1, 3, 3, "utf-16")
    assert uri == "cell0" and (rng.start.line, rng.end.line, rng.end.character) == (1, 1, 5)
    uri, rng = where.to_range(3, 1, 3, 2, "utf-16")
    assert uri == "cell1" and rng.start.line == 0


def test_diagnostic_without_related_support_folds_related_into_message():
    f = Finding("/a.py", 1, 1, 1, 2, "GT105", "warning", "cut", related=[])
    from gradtrace.findings import Related

    f.related.append(Related("/a.py", 1, 1, 1, 2, "defined here"))
    _, d = to_diagnostic(f, LineMap("file:///a.py", "/a.py", ["x"]), "utf-16", version=1, related_support=False)
    assert d.related_information is None and d.message == "cut\ndefined here (line 1)"


def test_server_settings_nested_and_dotted():
    settings, problems = server_settings_from_mapping(
        {"lint": {"select": ["GT1"], "severity": {"GT105": "error"}}, "probe.timeout": 12, "fixAll": False})
    assert problems == []
    assert settings.lint.select == ("GT1",) and settings.lint.severity == (("GT105", "error"),)
    assert settings.probe_timeout == 12.0 and settings.fix_all is False


@pytest.mark.parametrize(("mapping", "name"), [
    ({"probe": {"timeout": "soon"}}, "gradtrace.probe.timeout"),
    ({"probe": {"device": "tpu"}}, "gradtrace.probe.device"),
    ({"lint": {"run": "always"}}, "gradtrace.lint.run"),
    ({"lint": {"select": ["XYZ"]}}, "gradtrace.lint.select"),
    ({"lint": {"severity": {"GT105": "fatal"}}}, "gradtrace.lint.severity.GT105"),
    ({"logLevel": 3}, "gradtrace.logLevel"),
    ({"interpreter": 7}, "gradtrace.interpreter"),
    ({"typo": 1}, "gradtrace.typo"),
])
def test_bad_setting_is_named_and_defaulted(mapping, name):
    settings, problems = server_settings_from_mapping(mapping)
    assert [p.name for p in problems] == [name]
    assert settings == server_settings_from_mapping({})[0]


def test_interpreter_setting_feeds_the_probe_unless_probe_interpreter_is_set():
    assert server_settings_from_mapping({"interpreter": ["/v/bin/python"]})[0].probe_interpreter == ("/v/bin/python",)
    both = {"interpreter": ["/v/bin/python"], "probe": {"interpreter": "/w/bin/python"}}
    assert server_settings_from_mapping(both)[0].probe_interpreter == ("/w/bin/python",)


def test_editor_lint_keys_lay_over_the_project_key_by_key():
    settings, _ = server_settings_from_mapping({"lint": {"select": ["GT1"]}})
    project = LintSettings(select=("GT0",), ignore=("GT120",))
    merged = settings.lint_for(project)
    assert merged.select == ("GT1",) and merged.ignore == ("GT120",)


def test_extract_settings_shapes(tmp_path):
    assert extract_settings({"gradtrace": {"fixAll": False}}) == ({"fixAll": False}, [])
    assert extract_settings({"settings": {"fixAll": False}}) == ({"fixAll": False}, [])
    glob, folders = extract_settings({"settings": [{"workspace": tmp_path.as_uri(), "fixAll": False}],
                                      "globalSettings": {"logLevel": "debug"}})
    assert glob == {"logLevel": "debug"} and folders[0][0] == str(tmp_path)
    store = SettingsStore()
    store.update({"settings": [{"workspace": tmp_path.as_uri(), "fixAll": False}], "globalSettings": {}})
    assert store.for_path(str(tmp_path / "a.py")).fix_all is False
    assert store.for_path("/elsewhere/a.py").fix_all is True


def noqa(text: str, line0: int = 0, end0: int | None = None, code: str = "GT105"):
    lines = split_lines(text)
    edit = noqa_edit(lines, text, line0, line0 if end0 is None else end0, code, "utf-16")
    if edit is None:
        return None
    from .helpers import apply_text_edits

    return apply_text_edits(text, [edit])


def test_noqa_inserted_extended_or_skipped():
    assert noqa("y = x.detach()   \n") == "y = x.detach()  # noqa: GT105\n"
    assert noqa("y = x.detach()  # keep\n") == "y = x.detach()  # keep  # noqa: GT105\n"
    assert noqa("y = x.detach()  # NOQA:GT120\n") == "y = x.detach()  # NOQA:GT120, GT105\n"
    assert noqa("y = x.detach()  # noqa: GT105\n") is None
    assert noqa("y = '#' + x.detach()\n") == "y = '#' + x.detach()  # noqa: GT105\n"


def test_noqa_goes_to_the_last_line_when_the_first_ends_inside_a_string():
    text = 'y = f(x.detach(), """\ndoc\n""")\n'
    assert noqa(text, 0, 2) == 'y = f(x.detach(), """\ndoc\n""")  # noqa: GT105\n'
    text = "y = x.detach() + \\\n    z\n"
    assert noqa(text, 0, 1) == "y = x.detach() + \\\n    z  # noqa: GT105\n"


def test_fix_all_edit_spans_only_changed_lines():
    from pathlib import Path

    text = (Path(__file__).parent / "data" / "detach.py").read_text(encoding="utf-8")
    fixed = run_fix_all({"text": text, "path": "/nowhere/detach.py", "lint": LintSettings(), "root": None,
                         "overlays": []})
    edit = fix_all_edit(text, fixed, "utf-16")
    assert edit.range == types.Range(types.Position(6, 0), types.Position(7, 0))
    assert edit.new_text == 'label, feats = "😋🐍", encoder(x)\n'
    assert fix_all_edit("import torch\n", "import torch\n", "utf-16") is None
    tail = fix_all_edit("a\nb", "a\nc\nd", "utf-16")  # a change on the last line, no newline at the end
    assert (tail.range.start.line, tail.range.end.line, tail.range.end.character, tail.new_text) == (1, 1, 1, "c\nd")


def test_relocate_follows_moved_lines_and_drops_changed_ones():
    old = ["a", "y = x.detach()", "b"]
    f = Finding("/a.py", 2, 5, 2, 15, "GT105", "warning", "m",
                fix=Fix("t", True, (Edit(2, 5, 2, 15, "x"),)))
    moved = relocate(f, old, ["new", "new", "a", "y = x.detach()", "b"])
    assert (moved.line, moved.fix.edits[0].line) == (4, 4)
    assert relocate(f, old, ["a", "y = x.detach()  # edited", "b"]) is None


def test_hover_helpers():
    line = "x = 1  # noqa: GT120, gt105"
    assert code_at(line, line.index("gt105") + 2)[0] == "GT105"
    assert code_at(line, 2) is None
    assert dotted_at("h = self.encoder.weight @ x", 11) == "self.encoder"
    assert dotted_at("h = model.net.0.weight", 14) == "model.net.0"


def test_magics_become_pass():
    assert _neutralise("  !pip install torch") == "  pass"
    assert _neutralise("%timeit f()") == "pass"
    assert _neutralise("model?") == "pass"
    assert _neutralise("x = 1  # 100%") == "x = 1  # 100%"


@pytest.mark.parametrize("comment", ["# noqa", "# NOQA", "#noqa:GT105", "# noqa: GT120, GT105", "# noqa: GT120 GT105",
                                     "# keep  # noqa: gt105", "# noqa : GT120"])
def test_the_engine_and_disable_for_this_line_read_noqa_alike(comment):
    """Wherever the engine suppresses GT105, "Disable GT105 for this line" has nothing to add, and vice versa."""
    from gradtrace.analysis.source import SourceFile

    line = f"y = x.detach()  {comment}"
    suppressed = SourceFile.parse("/a.py", line + "\n").suppressed("GT105", 1)
    edit = noqa_edit([line, ""], line + "\n", 0, 0, "GT105", "utf-16")
    assert suppressed == (edit is None), (comment, suppressed, edit)


def test_a_document_text_goes_to_the_analysis_process_once_per_edit():
    """The job carries the text; the same text is not sent again as the document's unsaved text."""
    from gradtrace.lsp.worker import AnalysisWorker

    worker = AnalysisWorker(use_process=False)
    worker.set_overlay("/p", "/p/train.py", "import torch\n")
    worker.set_overlay("/p", "/p/model.py", "import torch  # model\n")
    jobs = []
    worker.call(jobs.append, {"path": "/p/train.py", "text": "import torch\n"})
    assert jobs[0]["overlay_from_text"] is True
    assert [path for _root, path, _text in jobs[0]["overlays"]] == ["/p/model.py"]
    worker.set_overlay("/p", "/p/train.py", "import torch\nx = 1\n")
    worker.call(jobs.append, {"path": "/p/train.py", "text": "import torch\nx = 1\n"})
    assert jobs[1]["overlays"] == []


def test_an_analysis_process_whose_server_is_gone_before_it_started_exits():
    """The server died while the child was still importing: the child's parent is no longer the server."""
    import subprocess
    import sys

    from .helpers import SERVER_ENV

    code = "from gradtrace.lsp.worker import child_init; import time; child_init(1); time.sleep(30)"
    child = subprocess.run([sys.executable, "-c", code], env=SERVER_ENV, timeout=20)
    assert child.returncode == 0
