"""Starts the gradtrace language server for the VS Code extension.

    python -I gradtrace_launcher.py --libs DIR          # useBundled: packages shipped in DIR/cpXY + DIR/common
    python gradtrace_launcher.py --from-environment     # gradtrace installed in this interpreter
    ... --check                                         # only report what would run (for debug information)

Before the server starts, one line goes to stderr: `gradtrace-launcher: ` and a JSON object saying which Python
runs it, from where, and what cannot be imported. When something is missing the process exits with status 3
after that line and a sentence; otherwise it becomes `gradtrace server` on stdio. The editor starts this
directly (no separate check first) and reads the line from the server's error output. `--check` prints the
same object on stdout, after importing everything the server and its analysis need, and exits 0.

Kept to syntax that old interpreters can parse, so that they get a clear "too old" answer instead of a
SyntaxError.
"""

import importlib
import json
import os
import sys

MIN_VERSION = (3, 10)
REPORT_PREFIX = "gradtrace-launcher: "
# What the server process imports before it answers `initialize`; the rest loads in its analysis process.
NEEDED_TO_START = ("gradtrace", "gradtrace.lsp.server")
NEEDED_TO_ANALYSE = ("pygls", "lsprotocol", "libcst", "jedi", "gradtrace.engine")


def bundle_dirs(libs):
    """The bundled directories for this interpreter, most specific first; (dirs, error)."""
    tag = "cp%d%d" % sys.version_info[:2]
    specific = os.path.join(libs, tag)
    common = os.path.join(libs, "common")
    if not os.path.isdir(specific):
        have = sorted(d for d in os.listdir(libs) if d.startswith("cp")) if os.path.isdir(libs) else []
        versions = ", ".join("%s.%s" % (d[2], d[3:]) for d in have) or "none"
        return [], "the extension bundles the server for Python %s; this interpreter is Python %d.%d" % (
            versions,
            sys.version_info[0],
            sys.version_info[1],
        )
    dirs = [specific]
    if os.path.isdir(common):
        dirs.append(common)
    return dirs, None


def check_imports(names):
    """Import `names`; a list of {module, error} for what fails."""
    missing = []
    for name in names:
        try:
            module = importlib.import_module(name)
            if name == "libcst":
                module.parse_module("x = 1\n")  # loads the compiled parser
        except Exception as exc:  # noqa: BLE001 - any failure means the server cannot run
            missing.append({"module": name, "error": "%s: %s" % (type(exc).__name__, exc)})
    return missing


def byte_code(dirs):
    """'shipped' when the bundle holds byte code for this interpreter, else 'compiled here' (written beside
    the sources on the first start, whatever PYTHONDONTWRITEBYTECODE says: -I ignores it)."""
    tag = sys.implementation.cache_tag
    for directory in dirs:
        if os.path.exists(os.path.join(directory, "gradtrace", "__pycache__", "__init__.%s.pyc" % tag)):
            return "shipped"
    return "compiled here"


def main(argv):
    check = "--check" in argv
    libs = None
    if "--libs" in argv:
        libs = argv[argv.index("--libs") + 1]
    report = {
        "python": "%d.%d.%d" % sys.version_info[:3],
        "executable": sys.executable,
        "strategy": "useBundled" if libs else "fromEnvironment",
        "gradtrace": None,
        "missing": [],
        "error": None,
        "paths": [],
        "bytecode": None,
    }
    if sys.version_info[:2] < MIN_VERSION:
        report["error"] = "gradtrace needs Python %d.%d or newer; this interpreter is Python %s" % (
            MIN_VERSION + (report["python"],)
        )
    elif libs:
        dirs, error = bundle_dirs(libs)
        report["paths"] = dirs
        report["error"] = error
        report["bytecode"] = byte_code(dirs) if dirs else None
        sys.path[0:0] = dirs
    if report["error"] is None:
        report["missing"] = check_imports(NEEDED_TO_START + (NEEDED_TO_ANALYSE if check else ()))
        if not any(m["module"] == "gradtrace" for m in report["missing"]):
            import gradtrace

            report["gradtrace"] = getattr(gradtrace, "__version__", "unknown")
    if check:
        sys.stdout.write(json.dumps(report) + "\n")
        return 0
    sys.stderr.write(REPORT_PREFIX + json.dumps(report) + "\n")
    sys.stderr.flush()
    if report["error"] or report["missing"]:
        problems = [report["error"]] if report["error"] else []
        problems += ["cannot import %(module)s (%(error)s)" % m for m in report["missing"]]
        sys.stderr.write("gradtrace: cannot start the language server: %s\n" % "; ".join(problems))
        return 3
    from gradtrace.cli import main as gradtrace_main

    sys.argv = ["gradtrace", "server"]
    return gradtrace_main(["server"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
