from gradtrace.rules.base import Rule


class SyntaxErrorRule(Rule):
    code = "GT000"
    name = "syntax-error"
    summary = "The file does not parse, so it was not analysed."
    severity = "error"
    framework = "any"
    docs = """
    ## What it does
    Reports a file that Python cannot parse, with the parser's message and position. Nothing else in
    the file is analysed until it parses again; other files are still checked.

    ## Why is this bad?
    A file that does not parse cannot run, and gradtrace cannot tell what reaches the loss.

    ## Example
    ```python
    loss = criterion(model(x) y)
    ```

    ## Use instead
    ```python
    loss = criterion(model(x), y)
    ```

    ## Fix safety
    No automatic fix.
    """

    def check(self, ctx):
        return ()  # reported by the engine before any rule runs
