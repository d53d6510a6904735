"""Through an edit of comments or whitespace the analysis process moves the previous lens instead of analysing
again: the moved lens must be the lens a fresh analysis of the new text gives."""

from __future__ import annotations

import pytest
from gradtrace.analysis.lens import Lens
from gradtrace.analysis.source import SourceFile
from gradtrace.engine import check_source
from gradtrace.lsp.relocation import layout_move, outline
from gradtrace.positions import split_lines

from .helpers import DATA

TEXT = (DATA / "lens_train.py").read_text(encoding="utf-8")
EDITS = {
    "comment after the cut": ("frozen = features.detach()", "frozen = features.detach()  # stop here"),
    "spaces inside a call": ("self.head(frozen)", "self.head( frozen )"),
    "comment lines below every cut": ("    optimizer.step()", "    # update\n    # now\n    optimizer.step()"),
    "spaces around an operator": ("x = torch.randn(8, 16)", "x  =  torch.randn(8, 16)"),
}


def lens_of(text: str):
    return Lens(check_source(text, "train.py").context).index()


@pytest.mark.parametrize("name", sorted(EDITS))
def test_a_moved_lens_is_the_fresh_lens(name):
    old, new = EDITS[name]
    edited = TEXT.replace(old, new)
    assert edited != TEXT
    before = lens_of(TEXT)
    moving = layout_move(outline(SourceFile.parse("train.py", TEXT).tree), split_lines(TEXT), split_lines(edited))
    assert moving is not None
    assert all(moving.line_after(line) == line for line in before.named_lines())
    moved, fresh = before.relocated(moving.move), lens_of(edited)
    assert moved.values == fresh.values
    assert [s.to_json() for s in moved.sinks] == [s.to_json() for s in fresh.sinks]
    assert moved.hints == fresh.hints
    assert moved.carried == fresh.carried


def test_a_line_added_above_a_cut_is_not_moved():
    before = lens_of(TEXT)
    edited = "# header\n" + TEXT
    moving = layout_move(outline(SourceFile.parse("train.py", TEXT).tree), split_lines(TEXT), split_lines(edited))
    assert moving is not None and moving.delta == 1
    assert moving.line_after(14) == 15 and 14 in before.named_lines()  # "cut at line 14" would be wrong
