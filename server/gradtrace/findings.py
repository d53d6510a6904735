"""The one data model every part of gradtrace exchanges: findings, fixes, edits.

Positions are 1-based lines and 1-based columns counted in code points (DESIGN §3). The language
server converts them to the client's units in `positions.py`, nowhere else.
"""

from __future__ import annotations

from gradtrace.records import asdict, field, record

SEVERITIES = ("error", "warning", "information", "hint")


@record(frozen=True)
class Edit:
    line: int
    column: int
    end_line: int
    end_column: int
    text: str


@record(frozen=True)
class Fix:
    title: str
    safe: bool
    edits: tuple[Edit, ...]

    def to_json(self) -> dict:
        return {"title": self.title, "safe": self.safe, "edits": [asdict(e) for e in self.edits]}


@record(frozen=True)
class Related:
    """The other end of a cut: e.g. the parameter that loses its gradient."""

    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    message: str


@record
class Finding:
    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    code: str
    severity: str
    message: str
    fix: Fix | None = None
    related: list[Related] = field(default_factory=list)
    # Extra facts for hovers and the gradient map (e.g. {"lost": ["encoder"], "op": ".detach()"}).
    data: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The CLI contract (DESIGN §3); `related` and `data` are extra keys other tools may ignore."""
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix.to_json() if self.fix else None,
            "related": [asdict(r) for r in self.related],
            "data": self.data,
        }

    @staticmethod
    def from_json(obj: dict) -> Finding:
        fix = obj.get("fix")
        return Finding(
            path=obj["path"],
            line=obj["line"],
            column=obj["column"],
            end_line=obj["end_line"],
            end_column=obj["end_column"],
            code=obj["code"],
            severity=obj["severity"],
            message=obj["message"],
            fix=Fix(fix["title"], fix["safe"], tuple(Edit(**e) for e in fix["edits"])) if fix else None,
            related=[Related(**r) for r in obj.get("related", [])],
            data=obj.get("data", {}),
        )

    def sort_key(self) -> tuple:
        return (self.path, self.line, self.column, self.code)
