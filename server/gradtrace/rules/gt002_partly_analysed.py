from gradtrace.rules.base import Rule


class PartlyAnalysed(Rule):
    code = "GT002"
    name = "partly-analysed"
    summary = "The file is nested too deeply or too large to follow completely; findings may be missing."
    severity = "information"
    framework = "any"
    docs = """
    ## What it does
    Says that the value flow stopped before the end of the file: the code is nested too deeply
    (thousands of parentheses or chained calls) or too long to follow within the time budget.

    ## Why is this bad?
    Findings after the point where analysis stopped may be missing.

    ## Example
    A generated file with a 10,000-level nested expression.

    ## Use instead
    Split generated code into smaller functions, or exclude it with `[tool.gradtrace] exclude`.

    ## Fix safety
    No automatic fix.
    """

    def check(self, ctx):
        analysis = ctx.analysis
        if analysis.frameworks and analysis.incomplete:
            reason = ("gradtrace met a construct it cannot follow" if analysis.error
                      else "the file is too large or nested too deeply to follow completely")
            ctx.report(ctx.source.line_span(1), f"Not fully analysed: {reason}; some findings may be missing.")
            if analysis.error:
                ctx.internal_errors.append(analysis.error)
        return ()
