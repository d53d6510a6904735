"""What a rule sees: the parsed file, the project, lazily computed facts, and `report`."""

from __future__ import annotations

import ast
from functools import cached_property

from gradtrace.analysis.file_analysis import FileAnalysis
from gradtrace.analysis.source import SourceFile, Span
from gradtrace.findings import Finding, Fix, Related

TYPE_CHECKING = False  # `typing` is not imported at run time (start-up)
if TYPE_CHECKING:
    from gradtrace.analysis.project import Project
    from gradtrace.rules.base import Rule


class AnalysisContext:
    def __init__(self, source: SourceFile, project: Project | None = None):
        self.source = source
        self.project = project
        self.findings: list[Finding] = []
        self.rule: type[Rule] | None = None
        self.internal_errors: list[str] = []  # analysis problems to log (never raised to the user)
        self._single: dict[str, FileAnalysis] = {}

    @property
    def path(self) -> str:
        return self.source.path

    @property
    def tree(self) -> ast.Module:
        assert self.source.tree is not None
        return self.source.tree

    @cached_property
    def names(self):
        from gradtrace.analysis.names import NameTable

        return NameTable.from_module(self.tree, self.source.nodes(ast.Import, ast.ImportFrom))

    @cached_property
    def analysis(self) -> FileAnalysis:
        """The one value-flow run over this file, with the plug-in of every framework it uses."""
        return FileAnalysis(self, self.source.frameworks)

    def analysis_with(self, framework: str) -> FileAnalysis:
        """The file's run, or (for a framework the file does not use) a run with that framework alone."""
        if framework in self.analysis.frameworks:
            return self.analysis
        if framework not in self._single:
            self._single[framework] = FileAnalysis(self, frozenset({framework}))
        return self._single[framework]

    @cached_property
    def torch(self):
        """PyTorch value-flow results for this file (module facts, sinks, dead sources, events)."""
        from gradtrace.analysis.torch_facts import analyze_torch

        return analyze_torch(self)

    @cached_property
    def tensorflow(self):
        """TensorFlow value-flow results for this file (variables, tapes, gradient calls, lost cuts)."""
        from gradtrace.analysis.frameworks.tensorflow.facts import TFFacts

        return TFFacts(self.analysis_with("tensorflow").plugin("tensorflow"))

    @cached_property
    def jax(self):
        """JAX value-flow results for this file (lost cuts, tracer errors, updates by gradients)."""
        from gradtrace.analysis.frameworks.jax.facts import build_jax_facts

        return build_jax_facts(self.analysis_with("jax").plugin("jax"))

    def span(self, node: ast.AST) -> Span:
        return self.source.span(node)

    def related(self, node: ast.AST, message: str, path: str | None = None, source: SourceFile | None = None) -> Related:
        src = source or self.source
        s = src.span(node)
        return Related(path or src.path, s.line, s.column, s.end_line, s.end_column, message)

    def report(
        self,
        where: ast.AST | Span,
        message: str,
        *,
        severity: str | None = None,
        fix: Fix | None = None,
        related: list[Related] | None = None,
        data: dict | None = None,
        code: str | None = None,
    ) -> Finding:
        assert self.rule is not None or code is not None
        span = where if isinstance(where, Span) else self.span(where)
        finding = Finding(
            path=self.path,
            line=span.line,
            column=span.column,
            end_line=span.end_line,
            end_column=span.end_column,
            code=code or self.rule.code,
            severity=severity or self.rule.severity,
            message=message,
            fix=fix,
            related=related or [],
            data=data or {},
        )
        self.findings.append(finding)
        return finding
