// Shared by the VS Code end-to-end scripts (e2e.js, gradient_map_e2e.js): where the tools are, a reporter,
// polling, a free port and the command palette.
"use strict";

const net = require("node:net");
const path = require("node:path");

const ROOT = path.resolve(__dirname, "..", "..");
const TOOLS = process.env.GRADTRACE_E2E_TOOLS || path.join(ROOT, ".e2e-tools");
const ARTIFACTS = process.env.GRADTRACE_E2E_ARTIFACTS || path.join(ROOT, "tests", "artifacts", "vscode");
const VSIX = process.env.GRADTRACE_VSIX;
const PYTHON = process.env.GRADTRACE_E2E_PYTHON || path.join(ROOT, ".venv", "bin", "python");
const CS_VERSION = process.env.CODE_SERVER_VERSION || "4.100.3";
const CODE_SERVER = path.join(TOOLS, `code-server-${CS_VERSION}`, "node_modules", ".bin", "code-server");

/** `say` (timestamped log lines), `check` (records and logs a named result) and the `results` list. */
function reporter(label) {
    const results = [];
    const t0 = Date.now();
    const say = (msg) => console.log(`[${label} ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
    function check(name, ok, detail) {
        results.push({ name, ok, detail });
        say(`${ok ? "PASS" : "FAIL"} ${name}${detail ? ` — ${detail}` : ""}`);
        return ok;
    }
    return { results, say, check };
}

/** Polls `fn` until it returns something truthy (an exception counts as not yet) or `ms` pass. */
async function waitFor(fn, ms, every = 500) {
    const end = Date.now() + ms;
    let last;
    while (Date.now() < end) {
        last = await Promise.resolve().then(fn).catch(() => null);
        if (last) {
            return last;
        }
        await new Promise((r) => setTimeout(r, every));
    }
    return last;
}

const flat = (s) => s.replace(/\s+/g, " ").trim();

function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.listen(0, "127.0.0.1", () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
        srv.on("error", reject);
    });
}

/** Runs a command from the palette by its title. */
async function runCommand(page, title) {
    await page.keyboard.press("F1");
    const input = page.locator(".quick-input-widget input");
    await input.waitFor({ timeout: 15_000 });
    await input.fill(`>${title}`);
    await page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first().waitFor({ timeout: 15_000 });
    await page.keyboard.press("Enter");
}

module.exports = {
    ROOT, TOOLS, ARTIFACTS, VSIX, PYTHON, CS_VERSION, CODE_SERVER, reporter, waitFor, flat, freePort, runCommand,
};
