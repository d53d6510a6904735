"""Findings mapped through an edit of comments or whitespace are exactly what a new analysis finds.

Random layout edits on the fixtures (a comment typed at the end of a line, a comment edited, spaces
between tokens, blank or comment lines added): whenever `through_layout_edit` maps the findings, they
equal `check_source` of the edited text, fixes and related places included. Edits of code are refused.
"""

from __future__ import annotations

import io
import random
import tokenize
from pathlib import Path

import pytest
from gradtrace.analysis.source import SourceFile
from gradtrace.engine import check_source
from gradtrace.lsp.relocation import outline, through_layout_edit
from gradtrace.positions import split_lines

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted(p for p in (ROOT / "fixtures").rglob("*.py") if p.name.startswith("bad_"))
PATH = "/project/edited.py"


def analyse(text: str):
    return check_source(text, PATH).findings


def mapped(old_text: str, new_text: str):
    old = SourceFile.parse(PATH, old_text)
    return through_layout_edit(analyse(old_text), outline(old.tree), split_lines(old_text), split_lines(new_text))


def layout_edit(text: str, rng: random.Random) -> str:
    lines = split_lines(text)
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)]
    kind = rng.choice(("comment at end", "edit comment", "space between tokens", "new comment line", "blank line"))
    if kind == "space between tokens":
        pairs = [(a, b) for a, b in zip(tokens, tokens[1:]) if a.end[0] == b.start[0] and a.end[1] <= b.start[1]
                 and a.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.NEWLINE)
                 and b.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT)]
        a, b = rng.choice(pairs)
        line = lines[a.end[0] - 1]
        lines[a.end[0] - 1] = line[:a.end[1]] + " " + line[a.end[1]:]
    elif kind == "edit comment" and any(t.type == tokenize.COMMENT and "noqa" not in t.string for t in tokens):
        comment = rng.choice([t for t in tokens if t.type == tokenize.COMMENT and "noqa" not in t.string])
        line = lines[comment.start[0] - 1]
        lines[comment.start[0] - 1] = line[:comment.end[1]] + " more words" + line[comment.end[1]:]
    elif kind in ("new comment line", "blank line"):
        ends = [t.end[0] for t in tokens if t.type == tokenize.NEWLINE]
        at = rng.choice(ends)
        indent = lines[at - 1][: len(lines[at - 1]) - len(lines[at - 1].lstrip())]
        lines.insert(at, indent + "# a note" if kind == "new comment line" else "")
    else:
        ends = [t for t in tokens if t.type == tokenize.NEWLINE and t.start[1] == len(lines[t.start[0] - 1].rstrip())
                and "#" not in lines[t.start[0] - 1]]
        row = rng.choice(ends).start[0]
        lines[row - 1] += "  # typed here"
    return "\n".join(lines)


@pytest.mark.parametrize("seed", range(6))
def test_mapped_findings_equal_a_new_analysis(seed):
    rng = random.Random(seed)
    used = 0
    for fixture in FIXTURES:
        text = fixture.read_text(encoding="utf-8")
        new_text = layout_edit(text, rng)
        result = mapped(text, new_text)
        if result is None:
            continue
        used += 1
        assert [f.to_json() for f in result] == [f.to_json() for f in analyse(new_text)], (fixture.name, new_text)
    assert used >= len(FIXTURES) // 2, f"only {used} of {len(FIXTURES)} edits were mapped"


def test_a_comment_typed_at_the_end_of_a_line_is_mapped_without_analysis():
    text = (ROOT / "fixtures" / "torch" / "bad_detach.py").read_text(encoding="utf-8")
    lines = split_lines(text)
    line = next(i for i, t in enumerate(lines) if "detach()" in t)
    for typed in ("#", "# w", "# why not"):
        edited = list(lines)
        edited[line] += "  " + typed
        result = mapped(text, "\n".join(edited))
        assert result is not None and [f.to_json() for f in result] == [f.to_json() for f in analyse("\n".join(edited))]


@pytest.mark.parametrize("edit", [
    lambda t: t.replace("latent.detach()", "latent"),  # code
    lambda t: t.replace("        latent = self.encoder(x)", "          latent = self.encoder(x)"),  # indentation
    lambda t: t.replace("        return self.decoder(latent.detach())", "        return self.decoder(latent.detach())  # noqa"),
    lambda t: t.replace("import torch\n", "import torch\n# moved\n"),  # lines move, and a message names a line
])
def test_edits_that_may_change_findings_are_analysed_again(edit):
    text = (ROOT / "fixtures" / "torch" / "bad_detach.py").read_text(encoding="utf-8")
    edited = edit(text)
    assert edited != text
    assert mapped(text, edited) is None
