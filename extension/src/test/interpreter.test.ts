import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { chooseInterpreter, expandVariables, InterpreterInputs } from "../common/interpreter";

const base: InterpreterInputs = {
    trusted: true,
    userSetting: undefined,
    workspaceSetting: undefined,
    pythonExtension: undefined,
    variables: { workspaceFolder: "/ws", userHome: "/home/u", env: { VENV: "/opt/venv" } },
};

describe("chooseInterpreter", () => {
    it("falls back to python3 on PATH when nothing is configured", () => {
        assert.deepEqual(chooseInterpreter(base), { command: ["python3"], source: "path" });
    });

    it("uses the Python extension's environment when it is installed", () => {
        const choice = chooseInterpreter({ ...base, pythonExtension: "/ws/.venv/bin/python" });
        assert.deepEqual(choice, { command: ["/ws/.venv/bin/python"], source: "python-extension" });
    });

    it("prefers an explicit gradtrace.interpreter over the Python extension", () => {
        const choice = chooseInterpreter({
            ...base,
            userSetting: ["/usr/bin/python3.12"],
            pythonExtension: "/ws/.venv/bin/python",
        });
        assert.deepEqual(choice, { command: ["/usr/bin/python3.12"], source: "setting" });
    });

    it("prefers the workspace value over the user value in a trusted workspace", () => {
        const choice = chooseInterpreter({ ...base, userSetting: ["/usr/bin/python3"], workspaceSetting: ["/ws/py"] });
        assert.deepEqual(choice.command, ["/ws/py"]);
    });

    it("ignores the workspace value in an untrusted workspace and says so", () => {
        const choice = chooseInterpreter({
            ...base,
            trusted: false,
            userSetting: ["/usr/bin/python3.11"],
            workspaceSetting: ["${workspaceFolder}/evil/python"],
        });
        assert.deepEqual(choice.command, ["/usr/bin/python3.11"]);
        assert.equal(choice.source, "setting");
        assert.match(choice.note ?? "", /ignored because the workspace is not trusted/);
    });

    it("does not use the Python extension's environment in an untrusted workspace", () => {
        const choice = chooseInterpreter({ ...base, trusted: false, pythonExtension: "/ws/.venv/bin/python" });
        assert.deepEqual(choice.command, ["python3"]);
        assert.equal(choice.source, "path");
        assert.match(choice.note ?? "", /Python extension's environment .* not used/);
    });

    it("treats an empty or blank setting as unset", () => {
        assert.equal(chooseInterpreter({ ...base, userSetting: [] }).source, "path");
        assert.equal(chooseInterpreter({ ...base, userSetting: ["  "] }).source, "path");
    });

    it("expands variables and keeps extra arguments", () => {
        const choice = chooseInterpreter({ ...base, workspaceSetting: ["${workspaceFolder}/.venv/bin/python", "-X", "utf8"] });
        assert.deepEqual(choice.command, ["/ws/.venv/bin/python", "-X", "utf8"]);
    });
});

describe("expandVariables", () => {
    it("expands workspaceFolder, userHome, env and ~", () => {
        const ctx = base.variables;
        assert.equal(expandVariables("${workspaceFolder}/a", ctx), "/ws/a");
        assert.equal(expandVariables("${userHome}/b", ctx), "/home/u/b");
        assert.equal(expandVariables("${env:VENV}/bin/python", ctx), "/opt/venv/bin/python");
        assert.equal(expandVariables("${env:MISSING}x", ctx), "x");
        assert.equal(expandVariables("~/py", ctx), "/home/u/py");
        assert.equal(expandVariables("a~/py", ctx), "a~/py");
    });

    it("leaves unknown variables and unset folders alone", () => {
        assert.equal(expandVariables("${fileDirname}/p", {}), "${fileDirname}/p");
        assert.equal(expandVariables("${workspaceFolder}/p", {}), "${workspaceFolder}/p");
    });
});
