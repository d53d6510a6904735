from gradtrace.rules.base import Rule


class FileSkipped(Rule):
    code = "GT001"
    name = "file-skipped"
    summary = "The file was skipped: binary, not UTF-8, unreadable or too large."
    severity = "information"
    framework = "any"
    docs = """
    ## What it does
    Says why a file given to `gradtrace check` was not analysed: it is binary, not UTF-8, unreadable,
    or larger than the size limit.

    ## Why is this bad?
    It is not; it tells you that no finding for that file does not mean "no problem".

    ## Example
    A `.py` file saved in Latin-1 with accented characters in a comment.

    ## Use instead
    Save source files as UTF-8.

    ## Fix safety
    No automatic fix.
    """

    def check(self, ctx):
        return ()  # reported by the engine when the file is read
