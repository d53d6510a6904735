from gradtrace.rules.base import Rule


class SyntaxErrorRule(Rule):
    code = "GT000"
    name = "syntax-error"
    summary = "The file does not parse: the statement with the error is not analysed."
    severity = "error"
    framework = "any"
    docs = """
    ## What it does
    Reports a file that Python cannot parse, with the parser's message and position. The statement
    that holds the error is set aside (the smallest one that lets the rest parse) and everything else
    is analysed, so findings elsewhere in the file stay while a line is being typed.

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
