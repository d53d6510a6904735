"""`gradtrace server` with test hooks, chosen by environment variables:

GT_TEST_RULES=1       adds rule GT998 (raises on files containing CRASH_ME), GT999 (sleeps
                      GT_TEST_SLOW seconds on files containing SLOW_ME) and GT997 (kills the
                      analysis process on files containing KILL_WORKER);
GT_TEST_PROBE=fake    a fake probe launcher (canned result; waits for cancellation on WAIT_FOR_CANCEL;
                      writes its call arguments as JSON lines to GT_TEST_PROBE_LOG);
GT_TEST_PROBE=missing the probe component cannot be imported.
"""

import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "server"))

from gradtrace.lsp.server import create_server, serve  # noqa: E402
from gradtrace.rules.base import Rule  # noqa: E402


class CrashingRule(Rule):
    code = "GT998"
    name = "test-crash"
    summary = "A test rule that crashes."
    framework = "any"
    docs = ""

    def check(self, ctx):
        if "CRASH_ME" in ctx.source.text:
            raise RuntimeError("boom from a test rule")
        return ()


class SlowRule(Rule):
    code = "GT999"
    name = "test-slow"
    summary = "A test rule that takes its time."
    framework = "any"
    docs = ""

    def check(self, ctx):
        if "SLOW_ME" in ctx.source.text:
            time.sleep(float(os.environ.get("GT_TEST_SLOW", "3")))
        return ()


class KillingRule(Rule):
    code = "GT997"
    name = "test-kill"
    summary = "A test rule that kills the analysis process."
    framework = "any"
    docs = ""

    def check(self, ctx):
        import multiprocessing

        if "KILL_WORKER" in ctx.source.text and multiprocessing.parent_process() is not None:
            os._exit(3)
        return ()


class FakeLauncher:
    def __init__(self):
        self.log = os.environ.get("GT_TEST_PROBE_LOG")

    def run(self, path, *, python=None, timeout=60.0, memory_mb=4096, device="cpu", cancel=None, progress=None):
        if self.log:
            with open(self.log, "a") as fh:
                fh.write(json.dumps({"path": path, "python": python, "timeout": timeout, "memory_mb": memory_mb,
                                     "device": device}) + "\n")
        text = open(path, encoding="utf-8").read()
        if progress:
            progress("building the model")
        if "WAIT_FOR_CANCEL" in text:
            cancelled = cancel.wait(15) if cancel is not None else False
            return {"status": "error", "framework": "torch", "isolation": [], "parameters": [], "findings": [],
                    "error": {"type": "Cancelled" if cancelled else "Timeout", "message": "stopped",
                              "path": path, "line": 1}}
        if progress:
            progress("forward and backward")
        lines = text.splitlines()
        cut_line = next(i for i, ln in enumerate(lines, 1) if "detach" in ln)
        col = lines[cut_line - 1].index("encoder(x)") + 1
        return {
            "status": "ok", "framework": "torch", "isolation": ["process-group", "timeout"],
            "parameters": [
                {"name": "encoder.weight", "shape": [8, 4], "grad": "none", "defined_at": {"path": path, "line": 4},
                 "cut": {"path": path, "line": cut_line, "op": ".detach()", "reason": "output does not require grad"}},
                {"name": "head.weight", "shape": [1, 8], "grad": "ok", "norm": 0.4213,
                 "defined_at": {"path": path, "line": 4}, "cut": None},
            ],
            "findings": [{"path": path, "line": cut_line, "column": col, "end_line": cut_line,
                          "end_column": col + len("encoder(x)"), "code": "GT901", "severity": "warning",
                          "message": "measured: `encoder.weight` has no gradient after backward()", "fix": None}],
            "error": None,
        }

    def shutdown(self):
        pass


if os.environ.get("GT_TEST_RULES"):  # runs in the analysis process too (spawn re-imports this script)
    import gradtrace.rules

    _rules_for = gradtrace.rules.rules_for
    gradtrace.rules.rules_for = lambda frameworks: _rules_for(frameworks) + (CrashingRule, SlowRule, KillingRule)

if os.environ.get("GT_TEST_PROBE") == "missing":
    sys.modules["gradtrace.probe.launcher"] = None  # `import` raises ImportError

server = create_server()
if os.environ.get("GT_TEST_PROBE") == "fake":
    server.probe.launcher_factory = FakeLauncher

if __name__ == "__main__":
    serve(server)
