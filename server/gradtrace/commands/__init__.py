"""The subcommands of `gradtrace`, one module each in this package, all with the same shape:

    add_arguments(parser)   the subcommand's options (argparse)
    run(args) -> int        what it does; the exit status

`gradtrace.cli` lists them here with their one-line help and imports only the module of the command that runs,
so `gradtrace server` never loads the checker's code and `gradtrace check` never loads the language server's.
"""

from __future__ import annotations

COMMANDS: dict[str, str] = {
    "check": "check files, directories and notebooks statically",
    "probe": "run a sandboxed forward/backward and name dead parameters",
    "server": "run the language server on stdio",
    "rules": "list the rules, print one rule's documentation, or build the documentation pages",
    "explain": "say what the value at FILE:LINE[:COL] carries gradient from, and what cut it",
}
