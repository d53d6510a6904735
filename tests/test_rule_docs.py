"""The rule documentation pages: shipped with the package, current, linked from every diagnostic, and built as
HTML that a browser can show (`gradtrace rules --markdown DIR` / `--html DIR`)."""

from __future__ import annotations

import html.parser
import os
import subprocess
import sys
from urllib.parse import unquote, urlparse

from gradtrace.rule_docs import markdown_to_html
from gradtrace.rules import all_rules
from gradtrace.rules.base import DOCS_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGENERATE = "gradtrace rules --markdown server/gradtrace/docs/rules"


def gradtrace(*args):
    return subprocess.run([sys.executable, "-m", "gradtrace", *args], capture_output=True, text=True, timeout=120)


def test_shipped_pages_are_current(tmp_path):
    proc = gradtrace("rules", "--markdown", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    built = sorted(os.listdir(tmp_path))
    assert built == sorted(os.listdir(DOCS_DIR)), f"pages added or removed: run `{REGENERATE}`"
    for name in built:
        with open(tmp_path / name, encoding="utf-8") as new, open(os.path.join(DOCS_DIR, name), encoding="utf-8") as old:
            assert new.read() == old.read(), f"{name} is out of date: run `{REGENERATE}`"


def test_every_rule_links_to_a_page_that_exists_and_documents_it():
    for rule in all_rules():
        url = urlparse(rule().url)
        assert url.scheme == "file", rule.url
        path = unquote(url.path)
        assert os.path.isfile(path), f"{rule.code}: {path} does not exist"
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        assert text.startswith(f"# {rule.code} {rule.name}\n")
        for section in ("## What it does", "## Why is this bad?", "## Example", "## Use instead"):
            assert section in text, (rule.code, section)


class _Checker(html.parser.HTMLParser):
    VOID = {"meta", "br", "img", "link"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.headings: list[str] = []
        self.links: list[str] = []
        self._in_heading = False

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "a":
            self.links.append(dict(attrs)["href"])
        self._in_heading = tag in ("h1", "h2")

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (self.stack[-5:], tag)
        self.stack.pop()
        self._in_heading = False

    def handle_data(self, data):
        if self._in_heading:
            self.headings.append(data)


def test_html_pages_are_well_formed_and_link_to_each_other(tmp_path):
    proc = gradtrace("rules", "--html", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    names = set(os.listdir(tmp_path))
    assert "index.html" in names and len(names) == len(all_rules()) + 1
    for name in names:
        checker = _Checker()
        with open(tmp_path / name, encoding="utf-8") as fh:
            checker.feed(fh.read())
        assert checker.stack == [], name
        for href in checker.links:
            assert "://" in href or href in names, (name, href)
    checker = _Checker()
    checker.feed((tmp_path / "GT105.html").read_text())
    assert checker.headings[:3] == ["GT105 detach-on-loss-path", "What it does", "Why is this bad?"]


def test_markdown_to_html_escapes_and_renders_the_subset_rules_use():
    page = markdown_to_html("A `x < y` and <script>, **bold** *it* [GT105](GT105.md)\n\n- one\n- two\n\n"
                            "```python\nif a < b:\n    pass\n```\n")
    assert "<code>x &lt; y</code> and &lt;script&gt;" in page
    assert "<strong>bold</strong> <em>it</em>" in page
    assert '<a href="GT105.html">GT105</a>' in page
    assert "<ul><li>one</li><li>two</li></ul>" in page
    assert '<pre><code class="language-python">if a &lt; b:\n    pass</code></pre>' in page
