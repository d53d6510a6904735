import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
    DEFAULT_SETTINGS,
    didChangeConfigurationParams,
    effectiveImportStrategy,
    initializationOptions,
    readSettings,
    toServerSettings,
} from "../common/settingsModel";

function reader(values: Record<string, unknown>) {
    return (key: string) => values[key];
}

describe("readSettings", () => {
    it("gives the defaults when nothing is set", () => {
        const { settings, problems } = readSettings(reader({}));
        assert.deepEqual(settings, DEFAULT_SETTINGS);
        assert.deepEqual(problems, []);
    });

    it("reads every setting", () => {
        const { settings, problems } = readSettings(
            reader({
                interpreter: ["/usr/bin/python3"],
                importStrategy: "fromEnvironment",
                "lint.enable": false,
                "lint.select": ["gt1", "GT005"],
                "lint.ignore": ["GT105"],
                "lint.run": "onSave",
                fixAll: false,
                "codeAction.fixViolation.enable": false,
                "codeAction.disableRuleComment.enable": false,
                showSyntaxErrors: false,
                "lens.enable": false,
                "inlayHints.enable": true,
                "probe.enable": false,
                "probe.timeout": 20,
                "probe.memory": 1024,
                "probe.device": "cuda:1",
                logLevel: "debug",
                "trace.server": "verbose",
            }),
        );
        assert.deepEqual(problems, []);
        assert.deepEqual(settings, {
            interpreter: ["/usr/bin/python3"],
            importStrategy: "fromEnvironment",
            lint: { enable: false, select: ["GT1", "GT005"], ignore: ["GT105"], run: "onSave" },
            fixAll: false,
            codeAction: { fixViolation: { enable: false }, disableRuleComment: { enable: false } },
            showSyntaxErrors: false,
            lens: { enable: false },
            inlayHints: { enable: true },
            probe: { enable: false, timeout: 20, memory: 1024, device: "cuda:1" },
            logLevel: "debug",
            trace: { server: "verbose" },
        });
    });

    it("falls back to the default on a bad value and names the setting", () => {
        const { settings, problems } = readSettings(
            reader({
                importStrategy: "fromSomewhere",
                "probe.timeout": -5,
                "lint.select": ["GT1", "E501"],
                "lint.run": 3,
                fixAll: "yes",
                "probe.device": "gpu",
            }),
        );
        assert.equal(settings.importStrategy, "useBundled");
        assert.equal(settings.probe.timeout, 60);
        assert.deepEqual(settings.lint.select, ["GT1"]);
        assert.equal(settings.lint.run, "onType");
        assert.equal(settings.fixAll, true);
        assert.deepEqual(
            problems.map((p) => p.key),
            ["importStrategy", "lint.select", "lint.run", "fixAll", "probe.timeout", "probe.device"],
        );
        assert.match(problems.find((p) => p.key === "lint.select")?.message ?? "", /"E501" is not a rule code/);
    });

    it("accepts a comma-free single string where a list is expected", () => {
        assert.deepEqual(readSettings(reader({ "lint.ignore": "GT105" })).settings.lint.ignore, ["GT105"]);
    });
});

describe("toServerSettings", () => {
    const ctx = { interpreter: ["/usr/bin/python3"], importStrategy: "useBundled" as const, workspaceTrusted: true };

    it("keeps the settings' shape and adds what the extension resolved", () => {
        const server = toServerSettings(DEFAULT_SETTINGS, ctx);
        assert.deepEqual(server.interpreter, ["/usr/bin/python3"]);
        assert.deepEqual(server.lint, DEFAULT_SETTINGS.lint);
        assert.deepEqual(server.probe, DEFAULT_SETTINGS.probe);
        assert.deepEqual(server.codeAction, DEFAULT_SETTINGS.codeAction);
        assert.equal(server.showSyntaxErrors, true);
        assert.deepEqual(server.lens, { enable: true });
        assert.deepEqual(server.inlayHints, { enable: false });
    });

    it("never enables the probe in an untrusted workspace", () => {
        const server = toServerSettings(DEFAULT_SETTINGS, { ...ctx, workspaceTrusted: false });
        assert.equal(server.probe.enable, false);
        assert.equal(toServerSettings(DEFAULT_SETTINGS, ctx).probe.enable, true);
    });

    it("does not share arrays with the input", () => {
        const settings = { ...DEFAULT_SETTINGS, lint: { ...DEFAULT_SETTINGS.lint, select: ["GT1"] } };
        const server = toServerSettings(settings, ctx);
        server.lint.select.push("GT2");
        assert.deepEqual(settings.lint.select, ["GT1"]);
    });

    it("is sent under the gradtrace section at initialize and on change", () => {
        const server = toServerSettings(DEFAULT_SETTINGS, ctx);
        assert.deepEqual(initializationOptions(server), { gradtrace: server });
        assert.deepEqual(didChangeConfigurationParams(server), { settings: { gradtrace: server } });
    });
});

describe("effectiveImportStrategy", () => {
    it("keeps the configured strategy in a trusted workspace", () => {
        assert.deepEqual(effectiveImportStrategy("fromEnvironment", true), { strategy: "fromEnvironment" });
        assert.deepEqual(effectiveImportStrategy("useBundled", false), { strategy: "useBundled" });
    });

    it("refuses fromEnvironment in an untrusted workspace and says why", () => {
        const r = effectiveImportStrategy("fromEnvironment", false);
        assert.equal(r.strategy, "useBundled");
        assert.match(r.refused ?? "", /untrusted workspace/);
    });
});
