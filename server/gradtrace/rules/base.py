"""What a rule is: its code, its documentation in fixed sections, its own examples, its check."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from gradtrace.records import field, record

TYPE_CHECKING = False  # `typing` is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import ClassVar

    from gradtrace.analysis.context import AnalysisContext
    from gradtrace.findings import Finding


# Each rule's documentation page ships with the package (built by `gradtrace rules --markdown`, see rule_docs.py).
# A `file:` URI opens offline in every editor: VS Code, code-server (on the machine that runs the server) and
# Neovim alike; the VS Code extension opens it rendered, through gradtrace.showRuleDocs.
DOCS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "docs", "rules")
DOC_SECTIONS = ("What it does", "Why is this bad?", "Example", "Use instead", "Fix safety")
EXPECT_MARK = re.compile(r"#\s*expect:\s*(GT\d{3})")


@record(frozen=True)
class Truth:
    """What the real framework does with an INVALID example (checked by tests that run it).

    `grads` maps an expression evaluated in the example's namespace after it ran (e.g.
    "model.encoder.weight") to "none" or "zero"; `raises` is a (exception type name, message
    fragment) pair that running the example must raise.
    """

    grads: dict[str, str] = field(default_factory=dict)
    raises: tuple[str, str] | None = None
    framework: str = "torch"


@record(frozen=True)
class Invalid:
    """An example the rule must flag: every line marked `# expect: GTxxx` and nothing else.

    `fixed` is the text after applying the rule's safe fixes (None: no safe fix expected).
    """

    code: str
    fixed: str | None = None
    truth: Truth | None = None

    @property
    def source(self) -> str:
        return _dedent(self.code).lstrip("\n")

    def expected_lines(self, code: str) -> list[int]:
        return [
            n
            for n, text in enumerate(self.source.splitlines(), start=1)
            if (m := EXPECT_MARK.search(text)) and m.group(1) == code
        ]


class Rule:
    """Base class: subclasses set the class attributes and implement `check`."""

    code: ClassVar[str]
    name: ClassVar[str]  # kebab-case, e.g. "detach-on-loss-path"
    summary: ClassVar[str]  # one line
    severity: ClassVar[str] = "warning"
    framework: ClassVar[str] = "torch"  # torch | tensorflow | jax | any
    docs: ClassVar[str]  # markdown with the DOC_SECTIONS as '## ' headings
    valid: ClassVar[tuple[str, ...]] = ()
    invalid: ClassVar[tuple[Invalid, ...]] = ()

    @property
    def url(self) -> str:
        from pathlib import Path

        return Path(DOCS_DIR, f"{self.code}.md").as_uri()

    @classmethod
    def documentation(cls) -> str:
        return f"# {cls.code} {cls.name}\n\n{cls.summary}\n\n{_dedent(cls.docs).strip()}\n"

    @classmethod
    def section(cls, title: str) -> str:
        """The text of one documentation section ('' when absent)."""
        text = _dedent(cls.docs)
        match = re.search(rf"^## {re.escape(title)}\s*\n(.*?)(?=^## |\Z)", text, re.S | re.M)
        return match.group(1).strip() if match else ""

    def check(self, ctx: AnalysisContext) -> Iterable[Finding]:  # pragma: no cover - abstract
        raise NotImplementedError


def valid_examples(rule: type[Rule]) -> list[str]:
    return [_dedent(v).lstrip("\n") for v in rule.valid]


def _dedent(text: str) -> str:
    import textwrap  # for the docs and examples only: a check never needs it

    return textwrap.dedent(text)
