import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
    describeStartProblem,
    launcherCommand,
    LauncherReport,
    parseLauncherReport,
    parseReportLine,
    REPORT_PREFIX,
} from "../common/launch";

const paths = { launcher: "/ext/extension/bundled/tool/gradtrace_launcher.py", libs: "/ext/extension/bundled/libs" };
const ok: LauncherReport = {
    python: "3.11.7",
    executable: "/usr/bin/python3",
    strategy: "useBundled",
    gradtrace: "0.1.0",
    missing: [],
    error: null,
    paths: ["/ext/extension/bundled/libs/cp311"],
    bytecode: "shipped",
};

describe("launcherCommand", () => {
    it("runs the bundled server in isolated mode", () => {
        assert.deepEqual(launcherCommand(["/usr/bin/python3"], "useBundled", paths, false), {
            command: "/usr/bin/python3",
            args: ["-I", paths.launcher, "--libs", paths.libs],
        });
    });

    it("keeps interpreter arguments and adds --check", () => {
        assert.deepEqual(launcherCommand(["conda", "run", "-n", "ml", "python"], "fromEnvironment", paths, true), {
            command: "conda",
            args: ["run", "-n", "ml", "python", paths.launcher, "--from-environment", "--check"],
        });
    });
});

describe("parseLauncherReport", () => {
    it("finds the JSON line after other output", () => {
        const report = parseLauncherReport(`conda says hi\n${JSON.stringify(ok)}\n`);
        assert.deepEqual(report, ok);
    });

    it("returns undefined for output that is not a report", () => {
        assert.equal(parseLauncherReport("Traceback (most recent call last):\n  SyntaxError\n"), undefined);
        assert.equal(parseLauncherReport('{"something": "else"}'), undefined);
    });
});

describe("parseReportLine", () => {
    it("reads the report the launcher writes to the server's error output", () => {
        assert.deepEqual(parseReportLine(`${REPORT_PREFIX}${JSON.stringify(ok)}`), ok);
    });

    it("ignores the server's other error output, including bare JSON", () => {
        assert.equal(parseReportLine("WARNING:pygls:something"), undefined);
        assert.equal(parseReportLine(JSON.stringify(ok)), undefined);
        assert.equal(parseReportLine(`${REPORT_PREFIX}{not json`), undefined);
    });
});

describe("describeStartProblem", () => {
    it("is silent when the server can start", () => {
        assert.equal(describeStartProblem(["python3"], ok, undefined), undefined);
    });

    it("says the interpreter was not found", () => {
        const text = describeStartProblem(["/nope/python"], undefined, { code: "ENOENT" });
        assert.match(text ?? "", /"\/nope\/python" was not found/);
        assert.match(text ?? "", /gradtrace\.interpreter/);
    });

    it("passes on a too-old or unbundled Python with the fix", () => {
        const text = describeStartProblem(["python3"], { ...ok, python: "3.9.18", error: "gradtrace needs Python 3.10 or newer; this interpreter is Python 3.9.18" }, undefined);
        assert.match(text ?? "", /^Gradtrace needs Python 3\.10 or newer/);
        assert.match(text ?? "", /Python 3\.10–3\.13/);
    });

    it("says gradtrace is missing from the environment for fromEnvironment", () => {
        const text = describeStartProblem(
            ["/venv/bin/python"],
            {
                ...ok,
                strategy: "fromEnvironment",
                gradtrace: null,
                executable: "/venv/bin/python",
                missing: [
                    { module: "gradtrace", error: "ModuleNotFoundError: No module named 'gradtrace'" },
                    { module: "gradtrace.lsp.server", error: "ModuleNotFoundError" },
                ],
            },
            undefined,
        );
        assert.match(text ?? "", /^gradtrace is not installed in \/venv\/bin\/python \(Python 3\.11\.7\)/);
        assert.match(text ?? "", /useBundled/);
        assert.doesNotMatch(text ?? "", /gradtrace\.lsp\.server/);
    });

    it("names a missing dependency of the bundled server", () => {
        const text = describeStartProblem(
            ["python3"],
            { ...ok, gradtrace: null, missing: [{ module: "libcst", error: "ImportError: native module" }] },
            undefined,
        );
        assert.match(text ?? "", /cannot import libcst with Python 3\.11\.7 \(ImportError: native module\)/);
    });

    it("shows the end of the error output when the interpreter could not run the launcher", () => {
        const text = describeStartProblem(["python3"], undefined, { exitCode: 1, stderr: "a\nb\nSyntaxError: bad\n" });
        assert.match(text ?? "", /could not start gradtrace's language server \(exit code 1\).*SyntaxError: bad/);
    });

    it("has nothing to say without a report or a failure", () => {
        assert.equal(describeStartProblem(["python3"], undefined, undefined), undefined);
    });
});
