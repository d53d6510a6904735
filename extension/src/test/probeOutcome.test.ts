import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { probeOutcome } from "../common/probeOutcome";

const missingTorch = {
    status: "error",
    framework: "torch",
    error: {
        type: "FrameworkMissing",
        message:
            "the interpreter /usr/bin/python3 cannot import torch: ModuleNotFoundError: No module named 'torch' " +
            "(choose the interpreter of your project with --python or the gradtrace.interpreter setting)",
        path: "/w/train.py",
        line: null,
    },
    findings: [],
};

describe("probeOutcome", () => {
    it("is silent when the probe ran", () => {
        assert.equal(probeOutcome({ status: "ok", findings: [{}] }, "train.py"), undefined);
    });

    it("says in one short sentence that the interpreter lacks the framework, and where to change it", () => {
        const outcome = probeOutcome(missingTorch, "train.py");
        assert.ok(outcome);
        assert.equal(outcome.setting, "gradtrace.interpreter");
        assert.match(outcome.message, /^gradtrace: cannot probe train\.py: the selected Python has no PyTorch\./);
        assert.doesNotMatch(outcome.message, /FrameworkMissing|--python|ModuleNotFoundError/);
        assert.ok(outcome.message.length <= 110, outcome.message);
    });

    it("points a time-out at the timeout setting", () => {
        const outcome = probeOutcome({ status: "timeout", error: { type: "Timeout", message: "did not finish in 60 s" } }, "a.py");
        assert.equal(outcome?.setting, "gradtrace.probe.timeout");
    });

    it("names what the probe does not run", () => {
        const outcome = probeOutcome({ status: "unsupported", framework: "jax", error: { type: "Unsupported" } }, "a.py");
        assert.match(outcome?.message ?? "", /does not run JAX code yet/);
    });

    it("leaves an error in the user's code to its finding", () => {
        const raised = { status: "error", error: { type: "ValueError", message: "bad", path: "/w/a.py", line: 12 }, findings: [{}] };
        assert.equal(probeOutcome(raised, "a.py"), undefined);
    });

    it("says a cancelled run nothing", () => {
        assert.equal(probeOutcome({ status: "error", error: { type: "Cancelled" } }, "a.py"), undefined);
    });
});
