"""Rule documentation pages, built from each rule's own documentation and examples.

    gradtrace rules --markdown DIR     # one page per rule + index.md
    gradtrace rules --html DIR         # the same as self-contained HTML pages + index.html

The Markdown pages ship inside the package (`gradtrace/docs/rules/`, regenerated with
`gradtrace rules --markdown server/gradtrace/docs/rules`): every diagnostic's documentation link points at one
of them (`Rule.url`), so the link works offline in any editor. The HTML converter handles the Markdown the
rule docs use (headings, paragraphs, lists, tables, fenced code, inline code, emphasis, links) and escapes
everything else.
"""

from __future__ import annotations

import html
import os
import re
import textwrap

from gradtrace.rules import all_rules
from gradtrace.rules.base import EXPECT_MARK, Rule, valid_examples

FRAMEWORK_NAMES = {"torch": "PyTorch", "tensorflow": "TensorFlow", "jax": "JAX", "any": "any framework",
                   "probe": "the probe (run time)"}
MAX_EXAMPLES = 2
STYLE = """body{font:15px/1.55 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1f2328}
code,pre{font:13px/1.45 ui-monospace,monospace;background:#f3f4f6;border-radius:4px}
code{padding:.1em .3em}pre{padding:.8em 1em;overflow:auto}pre code{padding:0;background:none}
table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:.3em .6em;text-align:left}
@media (prefers-color-scheme:dark){body{background:#0d1117;color:#e6edf3}code,pre{background:#161b22}
td,th{border-color:#30363d}a{color:#58a6ff}}"""


def page_name(code: str, fmt: str = "md") -> str:
    return f"{code}.{fmt}"


def _example_block(source: str) -> str:
    marked = EXPECT_MARK.sub(lambda m: f"# flagged: {m.group(1)}", source.rstrip())
    return f"```python\n{marked}\n```"


def markdown_page(rule: type[Rule]) -> str:
    """One rule's page: summary, facts, the documentation sections, examples taken from its tests."""
    fixable = any(example.fixed is not None for example in rule.invalid)
    parts = [
        f"# {rule.code} {rule.name}",
        rule.summary,
        "| | |\n|---|---|\n"
        f"| Severity | {rule.severity} |\n"
        f"| Framework | {FRAMEWORK_NAMES.get(rule.framework, rule.framework)} |\n"
        f"| Fix | {'a safe fix (`gradtrace check --fix`, quick fix in the editor)' if fixable else 'none automatic'} |",
        textwrap.dedent(rule.docs).strip(),
    ]
    flagged = [example.source for example in rule.invalid[:MAX_EXAMPLES]]
    quiet = valid_examples(rule)[:MAX_EXAMPLES]
    if flagged or quiet:
        parts.append("## Examples from the tests")
        if flagged:
            run = all(example.truth is not None for example in rule.invalid[:MAX_EXAMPLES])
            parts.append("Flagged (each one is run with the real framework in gradtrace's tests):" if run else "Flagged:")
            parts.extend(_example_block(s) for s in flagged)
        if quiet:
            parts.append("Not flagged:")
            parts.extend(_example_block(s) for s in quiet)
    parts.append(f"[All rules]({page_name('index')})")
    return "\n\n".join(parts) + "\n"


def index_markdown(rules) -> str:
    rows = ["| code | name | severity | what it finds |", "|---|---|---|---|"]
    for rule in rules:
        rows.append(f"| [{rule.code}]({page_name(rule.code)}) | {rule.name} | {rule.severity} | "
                    f"{rule.summary.replace('|', '/')} |")
    return "# gradtrace rules\n\n" + "\n".join(rows) + "\n"


# ---- Markdown -> HTML ---------------------------------------------------------------------------------

INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])|(?<!\w)_(?!\s)(.+?)(?<!\s)_(?!\w)"
                    r"|\[([^\]]+)\]\(([^)\s]+)\)")
LIST_ITEM = re.compile(r"^(\s*)([-*]|\d+\.)\s+(.*)$")


def _inline(text: str, link_suffix: str) -> str:
    out, pos = [], 0
    for m in INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        code, bold, star, under, label, href = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{_inline(bold, link_suffix)}</strong>")
        elif star is not None or under is not None:
            out.append(f"<em>{_inline(star if star is not None else under, link_suffix)}</em>")
        else:
            if href.endswith(".md") and "://" not in href:
                href = href[:-3] + link_suffix
            out.append(f'<a href="{html.escape(href)}">{_inline(label, link_suffix)}</a>')
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _table(rows: list[str], link_suffix: str) -> str:
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    head, body = cells[0], [r for r in cells[2:]]
    out = ["<table><thead><tr>" + "".join(f"<th>{_inline(c, link_suffix)}</th>" for c in head) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{_inline(c, link_suffix)}</td>" for c in row) + "</tr>" for row in body]
    return "\n".join(out) + "</tbody></table>"


def markdown_to_html(text: str, link_suffix: str = ".html") -> str:
    """The body HTML of `text`; links to sibling `.md` pages become `link_suffix` pages."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("```"):
            lang = line[3:].strip()
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            cls = f' class="language-{html.escape(lang)}"' if lang else ""
            out.append(f"<pre><code{cls}>{html.escape(chr(10).join(lines[i + 1:j]))}</code></pre>")
            i = j + 1
        elif m := re.match(r"^(#{1,6})\s+(.*)$", line):
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2), link_suffix)}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and re.match(r"^\s*\|[-:| ]+\|\s*$", lines[i + 1]):
            j = i
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            out.append(_table(lines[i:j], link_suffix))
            i = j
        elif m := LIST_ITEM.match(line):
            tag = "ol" if m.group(2)[0].isdigit() else "ul"
            items: list[str] = []
            while i < len(lines) and lines[i].strip():
                m = LIST_ITEM.match(lines[i])
                if m:
                    items.append(m.group(3))
                elif items:
                    items[-1] += " " + lines[i].strip()
                i += 1
            out.append(f"<{tag}>" + "".join(f"<li>{_inline(it, link_suffix)}</li>" for it in items) + f"</{tag}>")
        else:
            j = i
            while j < len(lines) and lines[j].strip() and not lines[j].startswith(("```", "#")) \
                    and not LIST_ITEM.match(lines[j]) and not lines[j].lstrip().startswith("|"):
                j += 1
            j = max(j, i + 1)
            out.append(f"<p>{_inline(' '.join(ln.strip() for ln in lines[i:j]), link_suffix)}</p>")
            i = j
    return "\n".join(out)


def html_page(markdown_text: str, title: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style></head>\n<body>\n"
            f"{markdown_to_html(markdown_text)}\n</body></html>\n")


def write_pages(directory: str, fmt: str) -> list[str]:
    """Write every rule's page and the index as `fmt` ("markdown" or "html") into `directory`; the paths."""
    os.makedirs(directory, exist_ok=True)
    rules = all_rules()
    pages = [(page_name(r.code), markdown_page(r), f"{r.code} {r.name}") for r in rules]
    pages.append((page_name("index"), index_markdown(rules), "gradtrace rules"))
    written = []
    for name, text, title in pages:
        if fmt == "html":
            name, text = name[:-3] + ".html", html_page(text, title)
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        written.append(path)
    return written
