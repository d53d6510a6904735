// The gradtrace extension end to end in VS Code (code-server) driven by headless Chromium.
//
//   node tests/vscode/e2e.js            (tests/vscode/test_vscode_e2e.py runs it; see the env below)
//
// For each scenario: a fresh profile, the .vsix installed into it, a copy of tests/vscode/workspace, a
// code-server of its own (in its own process group, killed at the end), and a screenshot per step in
// GRADTRACE_E2E_ARTIFACTS. Exits 0 when every check passed; prints "N passed, M failed" last.
//
// Environment:
//   GRADTRACE_VSIX           the packaged extension (required)
//   GRADTRACE_E2E_TOOLS      where scripts/setup-vscode-e2e.sh installed code-server and playwright-core
//   GRADTRACE_E2E_ARTIFACTS  screenshots and logs (default tests/artifacts/vscode)
//   GRADTRACE_E2E_PYTHON     interpreter with torch, set as gradtrace.interpreter in the trusted scenario
//   GRADTRACE_E2E_ONLY       run only the scenarios whose names are listed (comma-separated)
//   CODE_SERVER_VERSION      default 4.100.3
"use strict";

const { spawn, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const {
    ROOT, TOOLS, ARTIFACTS, VSIX, PYTHON, CODE_SERVER, reporter, waitFor, flat, freePort, runCommand,
} = require("./e2e_common");

const WORKSPACE_FIXTURE = path.join(__dirname, "workspace");
/** An interpreter without torch, for the probe's error: the system's python3 (the bundled server runs on it). */
const NO_TORCH_PYTHON = process.env.GRADTRACE_E2E_NO_TORCH_PYTHON || "python3";
const ONLY = (process.env.GRADTRACE_E2E_ONLY || "").split(",").filter(Boolean);

const { chromium } = require(path.join(TOOLS, "playwright", "node_modules", "playwright-core"));

const { results, say, check } = reporter("e2e");

async function waitForHealth(port, ms) {
    const end = Date.now() + ms;
    while (Date.now() < end) {
        try {
            const r = await fetch(`http://127.0.0.1:${port}/healthz`);
            if (r.ok) {
                return true;
            }
        } catch {
            // not up yet
        }
        await new Promise((r) => setTimeout(r, 250));
    }
    return false;
}

/** A code-server with a fresh profile and the extension installed; `stop()` kills its process group. */
async function startCodeServer(name, { trusted, settings }) {
    const run = fs.mkdtempSync(path.join(TOOLS, "runs", `${name}-`));
    const env = {
        ...process.env,
        TMPDIR: path.join(run, "tmp"),
        XDG_DATA_HOME: path.join(run, "xdg-data"),
        XDG_CONFIG_HOME: path.join(run, "xdg-config"),
        XDG_CACHE_HOME: path.join(run, "xdg-cache"),
        GRADTRACE_LOG_TO_CONSOLE: "1",
    };
    for (const d of ["tmp", "data/User", "extensions"]) {
        fs.mkdirSync(path.join(run, d), { recursive: true });
    }
    const ws = path.join(run, "workspace");
    fs.cpSync(WORKSPACE_FIXTURE, ws, { recursive: true });
    fs.writeFileSync(path.join(run, "data", "User", "settings.json"), JSON.stringify(settings, null, 2));
    const install = spawnSync(
        CODE_SERVER,
        ["--user-data-dir", path.join(run, "data"), "--extensions-dir", path.join(run, "extensions"), "--install-extension", VSIX],
        { env, encoding: "utf8", timeout: 120_000 },
    );
    if (install.status !== 0) {
        throw new Error(`installing the .vsix failed: ${install.stdout}\n${install.stderr}`);
    }
    say(`${name}: .vsix installed (${install.stdout.trim().split("\n").pop()})`);
    const port = await freePort();
    fs.writeFileSync(path.join(run, "config.yaml"), `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
    const args = [
        "--config", path.join(run, "config.yaml"),
        "--disable-telemetry", "--disable-update-check", "--disable-getting-started-override",
        "--user-data-dir", path.join(run, "data"), "--extensions-dir", path.join(run, "extensions"),
    ];
    if (trusted) {
        args.push("--disable-workspace-trust");
    }
    args.push(ws);
    const log = fs.openSync(path.join(run, "code-server.log"), "w");
    const child = spawn(CODE_SERVER, args, { env, detached: true, stdio: ["ignore", log, log] });
    // The pytest wrapper kills this group too if the driver itself dies.
    fs.appendFileSync(path.join(ARTIFACTS, "code-server.pgids"), `${child.pid}\n`);
    const stop = async () => {
        for (const sig of ["SIGTERM", "SIGKILL"]) {
            try {
                process.kill(-child.pid, sig);
            } catch {
                return;
            }
            await new Promise((r) => setTimeout(r, 1500));
        }
    };
    if (!(await waitForHealth(port, 60_000))) {
        await stop();
        throw new Error(`code-server did not answer on port ${port}; see ${run}/code-server.log`);
    }
    return { run, ws, port, stop, url: `http://127.0.0.1:${port}/?folder=${encodeURIComponent(ws)}` };
}

async function openBrowser() {
    const udd = fs.mkdtempSync(path.join(TOOLS, "runs", "chromium-"));
    const ctx = await chromium.launchPersistentContext(udd, {
        executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
        headless: true,
        viewport: { width: 1400, height: 900 },
        args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    return { ctx, udd, page: ctx.pages()[0] || (await ctx.newPage()) };
}

let shot = 0;
async function screenshot(page, scenario, step) {
    shot += 1;
    const file = path.join(ARTIFACTS, `${String(shot).padStart(2, "0")}-${scenario}-${step}.png`);
    await page.screenshot({ path: file });
    say(`screenshot ${path.relative(ROOT, file)}`);
}

// ---- workbench helpers -----------------------------------------------------------------------------

async function openFile(page, name) {
    await page.keyboard.press("Escape");
    const row = page.locator(`.explorer-folders-view .monaco-list-row[aria-label^="${name}"]`).first();
    await row.waitFor({ timeout: 30_000 });
    await row.dblclick();
    await page.locator(`.tabs-container .tab.active[aria-label^="${name}"]`).waitFor({ timeout: 15_000 });
    if (!name.endsWith(".ipynb")) {
        await page.locator(".editor-instance .monaco-editor .view-lines").first().waitFor({ timeout: 15_000 });
    }
}

/** The visible editor's line `n` (1-based) as a locator, for clicking into it. */
function editorLine(page, n) {
    // view-lines are absolutely positioned in order of `top`; line numbers are rendered beside them.
    return page.locator(".editor-instance .monaco-editor .view-line").nth(n - 1);
}

async function clickLine(page, n, column) {
    const line = editorLine(page, n);
    await line.waitFor({ timeout: 10_000 });
    const box = await line.boundingBox();
    // place the caret by clicking at the start of the line's text, then move with the keyboard
    await page.mouse.click(box.x + 2, box.y + box.height / 2);
    await page.keyboard.press("Home");
    await page.keyboard.press("Home");
    for (let i = 1; i < (column || 1); i++) {
        await page.keyboard.press("ArrowRight");
    }
}

async function problems(page) {
    // Ctrl+Shift+M toggles: press again if it just closed the panel
    const panel = page.locator(".markers-panel").first();
    for (let i = 0; i < 3 && !(await panel.isVisible()); i++) {
        await page.keyboard.press("Control+Shift+M");
        await panel.waitFor({ timeout: 3_000 }).catch(() => undefined);
    }
    await panel.waitFor({ timeout: 10_000 });
    await page.waitForTimeout(300);
    return page.locator(".markers-panel .monaco-list-row").allInnerTexts();
}

async function notificationTexts(page) {
    return page.locator(".notifications-toasts .notification-toast").allInnerTexts();
}


/** The text the Output panel shows (the visible part of the selected channel). */
async function outputText(page) {
    const t = await page.locator(".part.panel .monaco-editor .view-lines").allInnerTexts();
    return flat(t.join(" "));
}

/** Replace the user settings through the settings.json editor, as a user would (then VS Code applies them). */
async function setUserSettings(page, settings) {
    await runCommand(page, "Preferences: Open User Settings (JSON)");
    await page.locator('.tabs-container .tab.active[aria-label^="settings.json"]').waitFor({ timeout: 15_000 });
    await page.locator(".editor-instance .monaco-editor .view-lines").first().click();
    await page.keyboard.press("Control+A");
    await page.keyboard.press("Delete");
    await page.keyboard.insertText(JSON.stringify(settings));
    await page.keyboard.press("Control+S");
    await page.locator('.tabs-container .tab.active.dirty[aria-label^="settings.json"]').waitFor({ state: "detached", timeout: 15_000 });
    await page.waitForTimeout(300);
    await page.keyboard.press("Control+W");
}

/** Clicks "Show logs" on the notification that matches `toast`; the log's text once it matches `pattern`. */
async function logsFromNotification(page, toast, pattern) {
    await clickNotificationButton(page, toast, "Show logs");
    return waitFor(async () => {
        const t = await outputText(page);
        return pattern.test(t) ? t : null;
    }, 10_000);
}

async function clickNotificationButton(page, textPattern, button) {
    const toast = page.locator(".notifications-toasts .notification-toast", { hasText: textPattern }).first();
    await toast.locator(".monaco-button", { hasText: button }).first().click();
}

// ---- scenarios -------------------------------------------------------------------------------------

const SETTINGS_BASE = {
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": false,
    "workbench.welcomePage.walkthroughs.openOnInstall": false,
    "telemetry.telemetryLevel": "off",
    "extensions.autoCheckUpdates": false,
    "extensions.autoUpdate": false,
    "files.autoSave": "off",
    "editor.hover.delay": 100,
    "git.enabled": false,
    // the test edits settings.json by typing: no auto-closing or auto-indent there
    "[jsonc]": { "editor.autoClosingBrackets": "never", "editor.autoClosingQuotes": "never", "editor.autoIndent": "none", "editor.formatOnType": false },
};

/** The gradtrace log file of a code-server run (the extension's LogOutputChannel), or null. */
function gradtraceLogFile(cs) {
    const found = [];
    const walk = (d) => {
        for (const e of fs.existsSync(d) ? fs.readdirSync(d, { withFileTypes: true }) : []) {
            const p = path.join(d, e.name);
            if (e.isDirectory()) {
                walk(p);
            } else if (/gradtrace\.log$/.test(e.name)) {
                found.push(p);
            }
        }
    };
    walk(path.join(cs.run, "data", "logs"));
    return found[0] || null;
}

/** `[{at (ms since the epoch), level, text}]` from a LogOutputChannel file ("2026-12-03 09:50:01.123 [info] ..."). */
function logLines(file) {
    const out = [];
    for (const line of (file && fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "").split("\n")) {
        const m = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \[(\w+)\] (.*)$/.exec(line);
        if (m) {
            out.push({ at: new Date(m[1].replace(" ", "T")).getTime(), level: m[2], text: m[3] });
        }
    }
    return out;
}

/**
 * Cold start as a user sees it: a fresh profile (no settings but the workbench's own), python3 on PATH, the
 * workspace opened, train.py opened as soon as the explorer shows it; the time from that double-click to the
 * first squiggle. The breakdown comes from the extension's log (its timestamps are the extension host's clock,
 * the same machine's). Written to cold-start.json beside the screenshots.
 */
async function coldStartScenario(page, cs) {
    const S = "cold-start";
    const loadStarted = Date.now();
    await page.goto(cs.url, { waitUntil: "domcontentloaded" });
    await page.locator(".monaco-workbench").waitFor({ timeout: 60_000 });
    const workbench = Date.now();
    const row = page.locator('.explorer-folders-view .monaco-list-row[aria-label^="train.py"]').first();
    await row.waitFor({ timeout: 30_000 });
    const opened = Date.now();
    await row.dblclick();
    const squiggle = await waitFor(async () => (await page.locator(".monaco-editor .squiggly-warning").count()) > 0, 90_000, 50);
    const shown = Date.now();
    check("cold start: train.py shows its warning squiggle on a fresh profile", !!squiggle);
    await screenshot(page, S, "first-squiggle");
    const seconds = (ms) => Math.round(ms) / 1000;
    const report = {
        open_to_squiggle_s: squiggle ? seconds(shown - opened) : null,
        workbench_to_squiggle_s: squiggle ? seconds(shown - workbench) : null,
        page_load_to_squiggle_s: squiggle ? seconds(shown - loadStarted) : null,
        log: [],
    };
    const lines = logLines(gradtraceLogFile(cs));
    const first = lines.length ? lines[0].at : 0;
    for (const l of lines.slice(0, 40)) {
        report.log.push(`+${((l.at - first) / 1000).toFixed(3)} s [${l.level}] ${l.text}`);
    }
    fs.writeFileSync(path.join(ARTIFACTS, "cold-start.json"), JSON.stringify(report, null, 2));
    say(`cold start: ${report.open_to_squiggle_s} s from opening train.py to the first squiggle ` +
        `(${report.workbench_to_squiggle_s} s from the workbench, ${report.page_load_to_squiggle_s} s from loading the page)`);
    for (const l of report.log) {
        say(`  log ${l}`);
    }
}

async function trustedScenario(page, cs) {
    const S = "trusted";
    // a second copy of fixall.py for the palette's fix all (fixall.py itself is fixed on save below)
    fs.copyFileSync(path.join(WORKSPACE_FIXTURE, "fixall.py"), path.join(cs.ws, "palette_fix.py"));
    await page.goto(cs.url, { waitUntil: "domcontentloaded" });
    await page.locator(".monaco-workbench").waitFor({ timeout: 60_000 });
    say("workbench loaded");

    // 1. squiggles and Problems entries at the expected lines
    await openFile(page, "train.py");
    const warn = await waitFor(async () => (await page.locator(".monaco-editor .squiggly-warning").count()) > 0, 90_000);
    check("train.py shows a warning squiggle", !!warn);
    await openFile(page, "leaf.py");
    const err = await waitFor(async () => (await page.locator(".monaco-editor .squiggly-error").count()) > 0, 30_000);
    check("leaf.py shows an error squiggle", !!err);
    const rows = await waitFor(async () => {
        const r = (await problems(page)).map(flat);
        return r.some((t) => t.includes("GT105")) && r.some((t) => t.includes("GT120")) ? r : null;
    }, 30_000);
    const all = rows || (await problems(page)).map(flat);
    say(`problems: ${JSON.stringify(all)}`);
    check(
        "Problems: GT105 on train.py line 14",
        all.some((t) => /gradtrace ?\(?GT105\)?/.test(t) && /\[Ln 14, Col 26\]/.test(t) && /model\.encoder. gets no gradient/.test(t)),
    );
    check("Problems: GT120 (error) on leaf.py line 5", all.some((t) => /gradtrace ?\(?GT120\)?/.test(t) && /\[Ln 5, Col 1\]/.test(t)));
    await screenshot(page, S, "problems");

    // 1b. a Jupyter notebook: the model in one cell, the training in the next, the finding in the first
    await openFile(page, "notebook.ipynb");
    const nbSquiggle = await waitFor(
        async () => (await page.locator(".notebookOverlay .cell-editor-container .squiggly-warning").count()) > 0,
        30_000,
    );
    check("notebook: the model cell shows a warning squiggle", !!nbSquiggle);
    const nbRows = await waitFor(async () => {
        const r = (await problems(page)).map(flat);
        return r.some((t) => /GT105/.test(t) && /\[Ln 13, Col 26\]/.test(t)) && r.some((t) => /notebook\.ipynb/.test(t)) ? r : null;
    }, 20_000);
    say(`notebook problems: ${JSON.stringify(nbRows)}`);
    check("notebook: Problems has GT105 at cell 1, line 13", !!nbRows);
    await screenshot(page, S, "notebook");

    // 2. a hover with the rule's explanation
    await openFile(page, "train.py");
    await clickLine(page, 14, 30);
    await page.keyboard.press("Control+K");
    await page.keyboard.press("Control+I");
    // VS Code shows the diagnostic first, then the server's hover: the fix first, then why, then the rule, then
    // what the hovered value carries (the gradient lens)
    const hover = await waitFor(async () => {
        const text = flat((await page.locator(".monaco-hover-content").allInnerTexts()).join(" "));
        return /GT105 detach-on-loss-path/.test(text) && /Fix: Remove .detach\(\)/.test(text) ? text : null;
    }, 20_000);
    say(`hover: ${JSON.stringify((hover || "").slice(0, 600))}`);
    const order = (text, ...parts) => parts.every((p, i) => i === 0 || text.indexOf(p) > text.indexOf(parts[i - 1]));
    check(
        "hover on the .detach() leads with GT105's fix, then why, then the rule, then the lens",
        !!hover && /Why: detach\(\) returns a tensor that shares data but has no history/.test(hover) &&
            order(hover, "Fix: Remove", "Why:", "GT105 detach-on-loss-path", "∇ latent carries gradient from encoder"),
        (hover || "").slice(0, 120),
    );
    await page.waitForTimeout(300);
    await screenshot(page, S, "hover");
    await page.keyboard.press("Escape");

    // 2b. the gradient lens: a hover on a plain variable (no finding there) says what it carries and what cut it
    await clickLine(page, 21, 2);
    await page.keyboard.press("Control+K");
    await page.keyboard.press("Control+I");
    const lensHover = await waitFor(async () => {
        const text = flat((await page.locator(".monaco-hover-content").allInnerTexts()).join(" "));
        return /∇ loss carries gradient/.test(text) ? text : null;
    }, 20_000);
    say(`hover on loss: ${JSON.stringify(lensHover || "")}`);
    check(
        "hover on the plain variable `loss` says it carries gradient from model.head and lost model.encoder at the detach",
        !!lensHover && /∇ loss carries gradient from model\.head/.test(lensHover) &&
            /lost: model\.encoder — cut by .detach\(\) on line 14/.test(lensHover) && !/GT105/.test(lensHover),
        lensHover || "",
    );
    await page.waitForTimeout(300);
    await screenshot(page, S, "hover-plain-variable");
    await page.keyboard.press("Escape");

    // 2c. the code lens above loss.backward() names the module it does not reach; a click goes to the cut
    const lens = page.locator(".monaco-editor .codelens-decoration", { hasText: "reaches 1 of 2 modules" }).first();
    const lensShown = await lens.waitFor({ timeout: 20_000 }).then(() => true, () => false);
    const lensText = lensShown ? flat(await lens.innerText()) : "";
    say(`code lens: ${JSON.stringify(lensText)}`);
    check(
        "the code lens above loss.backward() names model.encoder as unreached, cut at line 14",
        lensText === "reaches 1 of 2 modules — model.encoder: cut at line 14 (.detach())",
        lensText,
    );
    await screenshot(page, S, "code-lens");
    if (lensShown) {
        await lens.locator("a").first().click();
        const moved = await waitFor(async () => {
            const t = flat((await page.locator("#status\\.editor\\.selection").allInnerTexts()).join(" "));
            return /Ln 14, Col 42 \(33 selected\)/.test(t) ? t : null;
        }, 10_000);
        check("clicking the code lens selects the cut's line (line 14, from its code to its end)", !!moved, moved || "");
        await screenshot(page, S, "code-lens-clicked");
    }

    // 3. a quick fix, applied and saved to disk
    await openFile(page, "quickfix.py");
    await waitFor(async () => (await page.locator(".monaco-editor .squiggly-warning").count()) > 0, 30_000);
    await clickLine(page, 6, 8);
    await page.keyboard.press("Control+.");
    const widget = page.locator(".action-widget");
    await widget.waitFor({ timeout: 20_000 });
    const fixRow = page.locator(".action-widget .monaco-list-row", { hasText: "gradtrace (GT116)" }).first();
    const fixFound = await fixRow.waitFor({ timeout: 10_000 }).then(() => true, () => false);
    const menu = flat(await widget.innerText());
    say(`quick fix menu: ${JSON.stringify(menu)}`);
    check("quick fix menu offers `gradtrace (GT116): Rename ...`", fixFound && /gradtrace \(GT116\): Rename/.test(menu));
    check("quick fix menu offers `Disable GT116 for this line`", /Disable GT116 for this line/.test(menu));
    await screenshot(page, S, "quickfix-menu");
    // choose it with the keyboard, as a user does (the widget's pointer block swallows synthetic clicks)
    let chosen = false;
    for (let i = 0; fixFound && i < 10 && !chosen; i++) {
        const focused = await page.locator(".action-widget .monaco-list-row.focused").first().getAttribute("aria-label");
        if (focused && focused.startsWith("gradtrace (GT116)")) {
            chosen = true;
        } else {
            await page.keyboard.press("ArrowDown");
        }
    }
    await page.keyboard.press(chosen ? "Enter" : "Escape");
    await page.waitForTimeout(500);
    await page.keyboard.press("Control+S");
    const fixedOnDisk = await waitFor(() => {
        const text = fs.readFileSync(path.join(cs.ws, "quickfix.py"), "utf8");
        return text.includes("delta.requires_grad = True") && !text.includes("require_grad ") ? text : null;
    }, 15_000);
    check("the quick fix is saved to disk (delta.requires_grad = True)", !!fixedOnDisk);
    const gone = await waitFor(async () => {
        const r = (await problems(page)).map(flat);
        return !r.some((t) => t.includes("GT116") && t.includes("delta")) ? r : null;
    }, 20_000);
    check("after the fix, quickfix.py has no GT116 any more", !!gone);
    await screenshot(page, S, "quickfix-applied");

    // 4. fix all on save (editor.codeActionsOnSave: source.fixAll.gradtrace)
    await openFile(page, "fixall.py");
    await waitFor(async () => (await page.locator(".monaco-editor .squiggly-warning").count()) > 0, 30_000);
    await screenshot(page, S, "fixall-before-save");
    await clickLine(page, 1, 1);
    await page.keyboard.press("Control+End");
    await page.keyboard.type("print(loss.item())\n");
    await page.keyboard.press("Control+S");
    const fixedAll = await waitFor(() => {
        const text = fs.readFileSync(path.join(cs.ws, "fixall.py"), "utf8");
        return text.includes("nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])") &&
            text.includes("noise.requires_grad = True") && text.includes("print(loss.item())")
            ? text
            : null;
    }, 20_000);
    check("fix all on save wrote nn.ModuleList and requires_grad to disk", !!fixedAll);
    await page.waitForTimeout(1500);
    await screenshot(page, S, "fixall-after-save");

    // 5. gradtrace.probe from the command palette: probe findings as diagnostics
    await openFile(page, "train.py");
    await runCommand(page, "gradtrace: Probe Gradients in Current File");
    const progress = await waitFor(async () => {
        const t = (await notificationTexts(page)).map(flat);
        return t.find((x) => x.includes("gradtrace: probing train.py")) || null;
    }, 15_000, 200);
    check("the probe shows a cancellable progress notification", !!progress, progress || "");
    if (progress) {
        await screenshot(page, S, "probe-running");
    }
    const probeMsg = await waitFor(async () => {
        const t = (await notificationTexts(page)).map(flat);
        return t.find((x) => /gradtrace probe: /.test(x) || /probe of train\.py failed/.test(x)) || null;
    }, 120_000);
    say(`probe notification: ${JSON.stringify(probeMsg)}`);
    check("the probe reports its result", !!probeMsg && /gradtrace probe: /.test(probeMsg), probeMsg || "(none)");
    const probeRows = await waitFor(async () => {
        const r = (await problems(page)).map(flat);
        return r.some((t) => /GT90\d/.test(t)) ? r : null;
    }, 30_000);
    say(`problems after probe: ${JSON.stringify(probeRows)}`);
    check(
        "Problems: probe findings (gradtrace probe, GT9xx) for encoder",
        !!probeRows && probeRows.some((t) => /gradtrace probe ?\(?GT90[15]\)?/.test(t) && /encoder/.test(t)),
    );
    await screenshot(page, S, "probe-result");

    // 5b. the rule documentation: from the palette (a quick pick of the rules), rendered in the Markdown preview
    await page.keyboard.press("Escape");
    await openFile(page, "train.py");
    await runCommand(page, "gradtrace: Show rule documentation");
    const pick = page.locator(".quick-input-widget input");
    await pick.waitFor({ timeout: 15_000 });
    await pick.fill("GT105");
    await page.locator(".quick-input-list .monaco-list-row", { hasText: "GT105" }).first().waitFor({ timeout: 15_000 });
    await page.keyboard.press("Enter");
    const preview = await waitFor(async () => {
        const tab = await page.locator('.tabs-container .tab[aria-label*="GT105"]').count();
        if (!tab) {
            return null;
        }
        for (const frame of page.frames()) {
            const text = await frame.locator("body").innerText().catch(() => "");
            if (/GT105 detach-on-loss-path/.test(text) && /Why is this bad\?/.test(text)) {
                return flat(text);
            }
        }
        return null;
    }, 30_000);
    check("gradtrace: Show rule documentation opens GT105's page rendered, offline", !!preview, (preview || "").slice(0, 100));
    await page.waitForTimeout(500);
    await screenshot(page, S, "rule-docs-preview");
    await page.keyboard.press("Control+W");

    // 5c. gradtrace: Fix all auto-fixable problems, from the palette
    await openFile(page, "palette_fix.py");
    await waitFor(async () => (await page.locator(".monaco-editor .squiggly-warning").count()) > 0, 30_000);
    await runCommand(page, "gradtrace: Fix all auto-fixable problems");
    await page.waitForTimeout(1000);
    await page.keyboard.press("Control+S");
    const paletteFixed = await waitFor(() => {
        const text = fs.readFileSync(path.join(cs.ws, "palette_fix.py"), "utf8");
        return text.includes("nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])") &&
            text.includes("noise.requires_grad = True") ? text : null;
    }, 20_000);
    check("gradtrace: Fix all auto-fixable problems applies every safe fix", !!paletteFixed);
    await screenshot(page, S, "palette-fix-all");

    // 5d. gradtrace: Print debug information, into the log
    await runCommand(page, "gradtrace: Print debug information");
    const debugInfo = await waitFor(async () => {
        const t = await outputText(page);
        return /settings sent to the server/.test(t) && /start-up check: \{/.test(t) ? t : null;
    }, 30_000);
    check(
        "gradtrace: Print debug information shows the server's capabilities, settings and start-up check in the log",
        !!debugInfo && /"bytecode": "shipped"/.test(debugInfo) && /"strategy": "useBundled"/.test(debugInfo) &&
            /capabilities: position encoding/.test(debugInfo),
        (debugInfo || "").slice(-300),
    );
    await page.waitForTimeout(300);
    await screenshot(page, S, "debug-information");

    // 6. the language status item names the interpreter and the server version
    await page.keyboard.press("Escape");
    await page.keyboard.press("Escape");
    await page.locator('[id="status.languageStatus"]').first().click();
    const status = await waitFor(async () => {
        const t = await page.locator(".hover-language-status").allInnerTexts();
        return t.map(flat).find((x) => x.includes("gradtrace")) || null;
    }, 10_000);
    say(`language status: ${JSON.stringify(status)}`);
    check(
        "the language status says gradtrace's version and the Python in use",
        !!status && /gradtrace 0\.\d+\.\d+/.test(status) && /Python 3\.\d+\.\d+ \(.*python.*\) · bundled server/.test(status),
        status || "",
    );
    await page.waitForTimeout(500);
    await screenshot(page, S, "language-status");
    await page.keyboard.press("Escape");

    // 7. an interpreter that does not exist: a clear error with "Show logs"; then back to a good one
    const goodSettings = JSON.parse(fs.readFileSync(path.join(cs.run, "data", "User", "settings.json"), "utf8"));
    await setUserSettings(page, { ...goodSettings, "gradtrace.interpreter": ["/nonexistent/bin/python3"] });
    const startError = await waitFor(async () => {
        const t = (await notificationTexts(page)).map(flat);
        return t.find((x) => /language server cannot start/.test(x)) || null;
    }, 30_000);
    say(`start error: ${JSON.stringify(startError)}`);
    check(
        "a missing interpreter gives a clear error with a Show logs button",
        !!startError && /"\/nonexistent\/bin\/python3" was not found/.test(startError) && /Show logs/.test(startError),
        startError || "",
    );
    await screenshot(page, S, "start-error");
    if (startError) {
        const logText = await logsFromNotification(page, "language server cannot start", /the server cannot start/);
        check("Show logs opens the gradtrace log with the reason", !!logText, (logText || "").split("\n").slice(-3).join(" | "));
        await screenshot(page, S, "start-error-logs");
    }
    await setUserSettings(page, goodSettings);
    const restarted = await waitFor(async () => {
        const t = await outputText(page);
        const last = t.slice(t.lastIndexOf("starting the server: the interpreter"));
        return last.includes(`interpreter: ${PYTHON} (from gradtrace.interpreter)`) && /server 0\.\d+\.\d+ running/.test(last) ? t : null;
    }, 60_000);
    check("restoring the interpreter setting restarts the server", !!restarted);

    // 7b. the probe with an interpreter that has no torch: one short sentence, Open settings / Show logs
    await setUserSettings(page, { ...goodSettings, "gradtrace.interpreter": [NO_TORCH_PYTHON] });
    await waitFor(async () => {
        const t = await outputText(page);
        const at = t.lastIndexOf(`interpreter: ${NO_TORCH_PYTHON} (from gradtrace.interpreter)`);
        return at >= 0 && /server 0\.\d+\.\d+ running/.test(t.slice(at));
    }, 60_000);
    await openFile(page, "train.py");
    await runCommand(page, "gradtrace: Probe Gradients in Current File");
    const probeError = await waitFor(async () => {
        const t = (await notificationTexts(page)).map(flat);
        return t.find((x) => /cannot probe train\.py/.test(x)) || null;
    }, 120_000);
    say(`probe error: ${JSON.stringify(probeError)}`);
    check(
        "a probe that cannot run says so in one short sentence with Open settings and Show logs",
        !!probeError && /the selected Python has no PyTorch/.test(probeError) && /Open settings/.test(probeError) &&
            /Show logs/.test(probeError) && !/FrameworkMissing|--python/.test(probeError),
        probeError || "",
    );
    await screenshot(page, S, "probe-error");
    if (probeError) {
        const errorLine = await logsFromNotification(page, "cannot probe train.py", /error.{0,12}probe of train\.py failed/);
        check("the failed probe is logged at error level", !!errorLine);
    }
    await setUserSettings(page, goodSettings);

    // 8. a setting the server applies without a restart: gradtrace.lint.ignore hides GT105
    await setUserSettings(page, { ...goodSettings, "gradtrace.lint.ignore": ["GT105"] });
    await openFile(page, "train.py");
    const ignored = await waitFor(async () => {
        const r = (await problems(page)).map(flat);
        return !r.some((t) => /GT105/.test(t)) && r.some((t) => /GT120/.test(t)) ? r : null;
    }, 30_000);
    check("gradtrace.lint.ignore [GT105] removes GT105 and keeps the other findings", !!ignored);
    await screenshot(page, S, "lint-ignore-GT105");

    // 9. gradtrace: Restart Server from the command palette
    await runCommand(page, "gradtrace: Restart Server");
    await runCommand(page, "gradtrace: Show Logs");
    const manual = await waitFor(async () => {
        const t = await outputText(page);
        const last = t.slice(t.lastIndexOf("restarting the server: gradtrace.restart"));
        return last.startsWith("restarting the server: gradtrace.restart") && /server 0\.\d+\.\d+ running/.test(last) ? t : null;
    }, 30_000);
    check("gradtrace: Restart Server restarts it (and Show Logs shows it)", !!manual);
    await page.waitForTimeout(500);
    await screenshot(page, S, "restarted");
    const afterRestart = await waitFor(async () => {
        const r = (await problems(page)).map(flat);
        return r.some((t) => /GT120/.test(t) && /\[Ln 5, Col 1\]/.test(t)) ? r : null;
    }, 30_000);
    check("after the restart, findings of files open in other tabs are back (leaf.py GT120)", !!afterRestart);
}

async function untrustedScenario(page, cs) {
    const S = "untrusted";
    await page.goto(cs.url, { waitUntil: "domcontentloaded" });
    await page.locator(".monaco-workbench").waitFor({ timeout: 60_000 });
    say("workbench loaded (restricted mode expected)");
    const banner = await waitFor(async () => {
        const t = await page.locator(".statusbar-item, .banner").allInnerTexts();
        return t.map(flat).find((x) => /Restricted Mode/i.test(x)) || null;
    }, 20_000);
    check("the workspace opens in Restricted Mode", !!banner, banner || "");

    await openFile(page, "train.py");
    const warn = await waitFor(async () => (await page.locator(".monaco-editor .squiggly-warning").count()) > 0, 90_000);
    check("untrusted: static analysis still shows squiggles (bundled server)", !!warn);
    const rows = (await problems(page)).map(flat);
    check("untrusted: Problems has GT105 on line 14", rows.some((t) => /gradtrace ?\(?GT105\)?/.test(t) && /\[Ln 14,/.test(t)));
    await screenshot(page, S, "static-analysis");

    // Restricted Mode: the probe (it runs the file's code) is not offered, in the palette or in the gradient map
    await page.keyboard.press("F1");
    const input = page.locator(".quick-input-widget input");
    await input.waitFor({ timeout: 15_000 });
    await input.fill(">gradtrace: ");
    await page.locator(".quick-input-list .monaco-list-row", { hasText: "gradtrace: Restart Server" }).first().waitFor({ timeout: 15_000 });
    const offered = (await page.locator(".quick-input-list .monaco-list-row").allInnerTexts()).map(flat);
    say(`palette in Restricted Mode: ${JSON.stringify(offered)}`);
    check("untrusted: the palette offers no probe", !offered.some((t) => /Probe Gradients/.test(t)) && offered.some((t) => /Show rule documentation/.test(t)));
    await screenshot(page, S, "palette-without-probe");
    await page.keyboard.press("Escape");
    await openFile(page, "train.py");
    await runCommand(page, "gradtrace: Show Gradient Map");
    const mapFrame = await waitFor(async () => {
        for (const frame of page.frames()) {
            if ((await frame.locator("#gt-summary").count().catch(() => 0)) > 0) {
                return frame;
            }
        }
        return null;
    }, 30_000);
    const probeButtons = mapFrame ? await mapFrame.locator("#gt-probe").count() : -1;
    check("untrusted: the gradient map has no Run probe button", !!mapFrame && probeButtons === 0, `buttons: ${probeButtons}`);
    await page.waitForTimeout(1000);
    await screenshot(page, S, "gradient-map-without-probe");
    await page.waitForTimeout(1000);
    const after = (await problems(page)).map(flat);
    check("untrusted: no probe diagnostics appeared", !after.some((t) => /GT90\d/.test(t)));

    // granting trust restarts the server with the probe enabled
    await runCommand(page, "Workspaces: Manage Workspace Trust");
    const trustButton = page.getByRole("button", { name: /^Trust( Folder)?$/ }).first();
    await trustButton.waitFor({ timeout: 20_000 });
    await screenshot(page, S, "trust-editor");
    await trustButton.click();
    // The banner goes once VS Code has applied the trust; a click on a button not yet live is repeated once.
    const restricted = async () => (await page.locator(".statusbar-item, .banner").allInnerTexts()).some((x) => /Restricted Mode/i.test(x));
    let trusted = await waitFor(async () => !(await restricted()), 15_000);
    if (!trusted && (await trustButton.count()) > 0) {
        say("the workspace is still restricted 15 s after the click: clicking Trust again");
        await trustButton.click().catch(() => undefined);
        trusted = await waitFor(async () => !(await restricted()), 15_000);
    }
    say(`workspace trusted in VS Code: ${!!trusted}`);
    // The Output view renders only the lines in view: remember every line seen while the log grows.
    await runCommand(page, "gradtrace: Show Logs");
    let seen = "";
    let shownAt = Date.now();
    const log = await waitFor(async () => {
        if (Date.now() - shownAt > 15_000) {
            await runCommand(page, "gradtrace: Show Logs");
            shownAt = Date.now();
        }
        seen += " " + (await outputText(page));
        return /restarting the server: workspace trust granted/.test(seen) && /workspace trusted: true/.test(seen) ? seen : null;
    }, 60_000);
    if (!log) {
        say(`log lines seen: ${seen.slice(-1500)}`);
    }
    check("granting trust restarts the server (log: workspace trust granted)", !!log);
    await page.waitForTimeout(500);
    await screenshot(page, S, "trusted-restart-log");
}

const SCENARIOS = [
    { name: "coldstart", trusted: true, settings: { ...SETTINGS_BASE }, body: coldStartScenario },
    {
        name: "trusted",
        trusted: true,
        settings: {
            ...SETTINGS_BASE,
            "gradtrace.interpreter": [PYTHON],
            "[python]": { "editor.codeActionsOnSave": { "source.fixAll.gradtrace": "explicit" } },
        },
        body: trustedScenario,
    },
    {
        name: "untrusted",
        trusted: false,
        settings: {
            ...SETTINGS_BASE,
            "security.workspace.trust.startupPrompt": "never",
            "security.workspace.trust.banner": "always",
        },
        body: untrustedScenario,
    },
];

async function main() {
    if (!VSIX || !fs.existsSync(VSIX)) {
        throw new Error(`GRADTRACE_VSIX must name the packaged extension (got ${VSIX})`);
    }
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    fs.mkdirSync(path.join(TOOLS, "runs"), { recursive: true });
    for (const f of fs.readdirSync(ARTIFACTS)) {
        if (f.endsWith(".png") || f.endsWith(".log")) {
            fs.rmSync(path.join(ARTIFACTS, f));
        }
    }
    for (const scenario of SCENARIOS) {
        if (ONLY.length && !ONLY.includes(scenario.name)) {
            continue;
        }
        say(`== scenario ${scenario.name}`);
        const cs = await startCodeServer(scenario.name, scenario);
        const browser = await openBrowser();
        let crashed = null;
        try {
            await scenario.body(browser.page, cs);
        } catch (err) {
            crashed = err;
            check(`${scenario.name}: scenario ran to the end`, false, String(err && err.stack || err));
            await screenshot(browser.page, scenario.name, "failure").catch(() => undefined);
        } finally {
            await browser.ctx.close().catch(() => undefined);
            fs.rmSync(browser.udd, { recursive: true, force: true });
            await cs.stop();
            // keep the extension host's log (the gradtrace channel is echoed there) beside the screenshots
            const logs = [];
            const walk = (d) => {
                for (const e of fs.existsSync(d) ? fs.readdirSync(d, { withFileTypes: true }) : []) {
                    const p = path.join(d, e.name);
                    if (e.isDirectory()) {
                        walk(p);
                    } else if (/exthost\.log$|gradtrace\.log$|-gradtrace\.log$/.test(e.name) || /gradtrace/.test(e.name)) {
                        logs.push(p);
                    }
                }
            };
            walk(path.join(cs.run, "data", "logs"));
            for (const p of logs) {
                fs.copyFileSync(p, path.join(ARTIFACTS, `${scenario.name}-${path.basename(p)}`));
            }
            fs.copyFileSync(path.join(cs.run, "code-server.log"), path.join(ARTIFACTS, `${scenario.name}-code-server.log`));
            if (!crashed && results.every((r) => r.ok)) {
                fs.rmSync(cs.run, { recursive: true, force: true });
            } else {
                say(`run directory kept for inspection: ${cs.run}`);
            }
        }
    }
}

main()
    .catch((err) => check("e2e driver", false, String(err && err.stack || err)))
    .finally(() => {
        const passed = results.filter((r) => r.ok).length;
        const failed = results.length - passed;
        for (const r of results.filter((x) => !x.ok)) {
            console.log(`FAILED: ${r.name}${r.detail ? ` — ${r.detail}` : ""}`);
        }
        say("done");
        console.log(`e2e: ${passed} passed, ${failed} failed`);
        process.exit(failed === 0 && passed > 0 ? 0 : 1);
    });
