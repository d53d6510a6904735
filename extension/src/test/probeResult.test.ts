import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { summariseProbeResult } from "../common/probeResult";

describe("summariseProbeResult", () => {
    it("names the parameters without gradient", () => {
        const s = summariseProbeResult({
            status: "ok",
            parameters: [
                { name: "model.fc1.weight", grad: "ok" },
                { name: "model.fc2.weight", grad: "none" },
                { name: "model.fc2.bias", grad: "zero" },
            ],
        });
        assert.equal(s.level, "warning");
        assert.match(s.text, /^2 of 3 parameters get no gradient \(model\.fc2\.weight, model\.fc2\.bias\)/);
    });

    it("shortens long lists", () => {
        const parameters = Array.from({ length: 7 }, (_, i) => ({ name: `p${i}`, grad: "none" }));
        assert.match(summariseProbeResult({ status: "ok", parameters }).text, /p0, p1, p2, p3 and 3 more/);
    });

    it("reports non-finite gradients", () => {
        const s = summariseProbeResult({ status: "ok", parameters: [{ name: "w", grad: "nonfinite" }] });
        assert.match(s.text, /1 get a non-finite gradient \(w\)/);
    });

    it("says all is well when every parameter has a gradient", () => {
        const s = summariseProbeResult({ status: "ok", parameters: [{ name: "w", grad: "ok" }] });
        assert.deepEqual(s, { level: "info", text: "all 1 parameters get a gradient." });
    });

    it("reports errors and timeouts as errors", () => {
        assert.equal(summariseProbeResult({ status: "timeout" }).level, "error");
        const s = summariseProbeResult({ status: "error", error: { type: "RuntimeError", message: "boom", line: 12 } });
        assert.deepEqual(s, { level: "error", text: "could not probe this file: RuntimeError: boom (line 12)" });
    });

    it("copes with an unexpected result", () => {
        assert.equal(summariseProbeResult(null).level, "info");
        assert.equal(summariseProbeResult("done").level, "info");
    });
});
