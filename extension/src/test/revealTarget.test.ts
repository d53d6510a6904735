import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { revealTarget } from "../common/revealTarget";

describe("revealTarget", () => {
    it("reads the code lens's argument", () => {
        const selection = { start: { line: 13, character: 8 }, end: { line: 13, character: 34 } };
        assert.deepEqual(revealTarget({ uri: "file:///w/train.py", selection }), {
            uri: "file:///w/train.py",
            start: { line: 13, character: 8 },
            end: { line: 13, character: 34 },
        });
    });

    it("refuses anything else", () => {
        for (const bad of [
            undefined,
            "file:///w/train.py",
            { uri: "file:///w/train.py" },
            { uri: 3, selection: { start: { line: 1, character: 0 }, end: { line: 1, character: 0 } } },
            { uri: "file:///w/train.py", selection: { start: { line: -1, character: 0 }, end: { line: 1, character: 0 } } },
            { uri: "file:///w/train.py", selection: { start: { line: 1.5, character: 0 }, end: { line: 1, character: 0 } } },
        ]) {
            assert.equal(revealTarget(bad), undefined, JSON.stringify(bad));
        }
    });
});
