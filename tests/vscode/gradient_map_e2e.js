// The gradient map in VS Code (code-server), driven by headless Chromium: opened before a probe (the static map,
// labelled), redrawn after the probe, checked in the webview's DOM (dead parameters and the cut), and a click
// on the cut moves the editor to the cut's line. Screenshots in GRADTRACE_E2E_ARTIFACTS.
//
//   node tests/vscode/gradient_map_e2e.js   (tests/vscode/test_gradient_map_e2e.py runs it)
//
// Environment as tests/vscode/e2e.js: GRADTRACE_VSIX (required), GRADTRACE_E2E_TOOLS, GRADTRACE_E2E_ARTIFACTS,
// GRADTRACE_E2E_PYTHON, CODE_SERVER_VERSION. Prints "gradient-map e2e: N passed, M failed" last.
"use strict";

const { spawn, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const {
    ROOT, TOOLS, ARTIFACTS, VSIX, PYTHON, CODE_SERVER, reporter, waitFor, flat, freePort, runCommand,
} = require("./e2e_common");

const FIXTURE = path.join(ROOT, "fixtures", "torch", "bad_detach.py");
const CUT_LINE = 15;
const ENCODER = ["model.encoder.0.weight", "model.encoder.0.bias", "model.encoder.2.weight", "model.encoder.2.bias"];

const { chromium } = require(path.join(TOOLS, "playwright", "node_modules", "playwright-core"));

const { results, say, check } = reporter("gradient-map e2e");

async function startCodeServer() {
    fs.mkdirSync(path.join(TOOLS, "runs"), { recursive: true });
    const run = fs.mkdtempSync(path.join(TOOLS, "runs", "gradient-map-"));
    const env = {
        ...process.env,
        TMPDIR: path.join(run, "tmp"),
        XDG_DATA_HOME: path.join(run, "xdg-data"),
        XDG_CONFIG_HOME: path.join(run, "xdg-config"),
        XDG_CACHE_HOME: path.join(run, "xdg-cache"),
    };
    for (const d of ["tmp", "data/User", "extensions", "workspace"]) {
        fs.mkdirSync(path.join(run, d), { recursive: true });
    }
    const ws = path.join(run, "workspace");
    fs.copyFileSync(FIXTURE, path.join(ws, "autoencoder.py"));
    const settings = {
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": false,
        "workbench.colorTheme": "Default Dark Modern",
        "telemetry.telemetryLevel": "off",
        "extensions.autoCheckUpdates": false,
        "extensions.autoUpdate": false,
        "git.enabled": false,
        "gradtrace.interpreter": [PYTHON],
    };
    fs.writeFileSync(path.join(run, "data", "User", "settings.json"), JSON.stringify(settings, null, 2));
    const install = spawnSync(
        CODE_SERVER,
        ["--user-data-dir", path.join(run, "data"), "--extensions-dir", path.join(run, "extensions"), "--install-extension", VSIX],
        { env, encoding: "utf8", timeout: 120_000 },
    );
    if (install.status !== 0) {
        throw new Error(`installing the .vsix failed: ${install.stdout}\n${install.stderr}`);
    }
    const port = await freePort();
    fs.writeFileSync(path.join(run, "config.yaml"), `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
    const log = fs.openSync(path.join(run, "code-server.log"), "w");
    const child = spawn(
        CODE_SERVER,
        ["--config", path.join(run, "config.yaml"), "--disable-telemetry", "--disable-update-check",
            "--disable-getting-started-override", "--disable-workspace-trust",
            "--user-data-dir", path.join(run, "data"), "--extensions-dir", path.join(run, "extensions"), ws],
        { env, detached: true, stdio: ["ignore", log, log] },
    );
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
    const healthy = await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 60_000, 250);
    if (!healthy) {
        await stop();
        throw new Error(`code-server did not answer; see ${run}/code-server.log`);
    }
    return { run, ws, stop, url: `http://127.0.0.1:${port}/?folder=${encodeURIComponent(ws)}` };
}

async function screenshot(page, step) {
    const file = path.join(ARTIFACTS, `gradient-map-${step}.png`);
    await page.screenshot({ path: file });
    say(`screenshot ${path.relative(ROOT, file)}`);
}

/** The frame that holds the gradient map's page (a webview is an iframe inside an iframe). */
async function mapFrame(page) {
    for (const frame of page.frames()) {
        if ((await frame.locator("#gt-map").count().catch(() => 0)) > 0) {
            return frame;
        }
    }
    return null;
}

/** The words drawn in an SVG element (its <text>s; not its <title>, which holds the element's id). */
async function svgText(locator) {
    return flat(await locator.evaluate((e) => [...e.querySelectorAll("text")].map((t) => t.textContent).join(" ")));
}

async function cursorLine(page) {
    const text = await page.locator('[id="status.editor.selection"]').first().innerText();
    const m = /Ln (\d+)/.exec(text);
    return m ? Number(m[1]) : null;
}

async function scenario(page, cs) {
    await page.goto(cs.url, { waitUntil: "domcontentloaded" });
    await page.locator(".monaco-workbench").waitFor({ timeout: 60_000 });
    const row = page.locator('.explorer-folders-view .monaco-list-row[aria-label^="autoencoder.py"]').first();
    await row.waitFor({ timeout: 30_000 });
    await row.dblclick();
    await page.locator(".editor-instance .monaco-editor .view-lines").first().waitFor({ timeout: 15_000 });
    const squiggle = await waitFor(async () => (await page.locator(".monaco-editor .squiggly-warning").count()) > 0, 90_000);
    check("the language server analysed autoencoder.py (a warning squiggle)", !!squiggle);

    // 1. before any probe: the static map, labelled as such
    await runCommand(page, "gradtrace: Show Gradient Map");
    const staticFrame = await waitFor(async () => {
        const f = await mapFrame(page);
        return f && (await f.locator("body[data-source='static'] #gt-map svg").count()) > 0 ? f : null;
    }, 60_000);
    check("the map opens beside the editor before a probe", !!staticFrame);
    if (staticFrame) {
        const kind = flat(await staticFrame.locator("#gt-kind").innerText());
        check("without a probe the map says it comes from static analysis only", kind === "static analysis only", kind);
        const cutText = await svgText(staticFrame.locator("#gt-map .gt-cut").first());
        check("the static map already marks the .detach() cut on line 15", cutText === "✂ .detach() · line 15", cutText);
        // drawn from the gradient lens, as the code lens above loss.backward() says: the decoder reaches the loss
        const reached = await staticFrame.locator("#gt-map .gt-param.gt-reached").count();
        const reachedText = reached ? await svgText(staticFrame.locator("#gt-map .gt-param.gt-reached").first()) : "";
        check("the static map draws the decoder as reaching the loss", reached === 1 && /decoder/.test(reachedText),
            reachedText);
    }
    await screenshot(page, "static");

    // 2. the probe, run from the editor; the map redraws by itself
    // focus the editor as a user does, clicking at the start of its first line
    const first = await page.locator(".editor-instance .monaco-editor .view-line").first().boundingBox();
    await page.mouse.click(first.x + 2, first.y + first.height / 2);
    await runCommand(page, "gradtrace: Probe Gradients in Current File");
    const frame = await waitFor(async () => {
        const f = await mapFrame(page);
        return f && (await f.locator("body[data-source='probe'] #gt-map svg").count()) > 0 ? f : null;
    }, 150_000);
    check("after the probe the map redraws from the probe result", !!frame);
    if (!frame) {
        await screenshot(page, "no-probe-map");
        return;
    }
    const kind = flat(await frame.locator("#gt-kind").innerText());
    const summary = flat(await frame.locator("#gt-summary").innerText());
    check("the map's header says probe result and counts the dead parameters",
        kind === "probe result" && /4 no gradient \(None\) — of 8 parameters/.test(summary), `${kind}: ${summary}`);
    const dead = await frame.locator("#gt-map .gt-param.gt-none").evaluateAll((els) =>
        els.map((e) => ({ title: (e.querySelector("a") || e).getAttribute("xlink:title") || "",
            text: [...e.querySelectorAll("text")].map((t) => t.textContent).join(" ") })));
    const deadNames = dead.map((d) => d.title.split(":")[0]).sort();
    check("the four encoder parameters are drawn as dead (None)",
        JSON.stringify(deadNames) === JSON.stringify([...ENCODER].sort()) && dead.every((d) => /None/.test(d.text)),
        JSON.stringify(deadNames));
    const live = await frame.locator("#gt-map .gt-param.gt-ok").count();
    check("the four decoder parameters are drawn as training, with their gradient norm",
        live === 4 && /‖g‖/.test(await svgText(frame.locator("#gt-map .gt-param.gt-ok").first())));
    const encoder = (await Promise.all((await frame.locator("#gt-map .gt-module.gt-dead").all()).map(svgText))).join(" | ");
    check("the encoder module is marked as getting no gradient", /encoder — no gradient/.test(encoder), encoder);
    const cut = frame.locator("#gt-map .gt-cut").first();
    const cutText = await svgText(cut);
    check("the cut is drawn with its op and line", cutText === `✂ detach · line ${CUT_LINE}`, cutText);
    check("the edge the cut severs is drawn as severed", (await frame.locator("#gt-map .gt-severed").count()) === 1);
    const colors = await frame.evaluate(() => {
        const fill = (sel) => getComputedStyle(document.querySelector(sel + " path, " + sel + " polygon")).fill;
        return { dead: fill("#gt-map .gt-param.gt-none"), live: fill("#gt-map .gt-param.gt-ok"),
            bg: getComputedStyle(document.body).backgroundColor };
    });
    check("the map follows the dark theme (dark background, themed fills)",
        /rgb\((\d+), (\d+), (\d+)\)/.test(colors.bg) && colors.bg.match(/\d+/g).slice(0, 3).every((v) => Number(v) < 80) &&
        colors.dead !== "rgb(251, 213, 213)", JSON.stringify(colors));
    await page.keyboard.press("Escape");
    await screenshot(page, "probe");

    // 3. a click on the cut opens its line in the editor
    const before = await cursorLine(page);
    await cut.click();
    const line = await waitFor(async () => ((await cursorLine(page)) === CUT_LINE ? CUT_LINE : null), 15_000, 250);
    check("clicking the cut moves the editor to the cut's line", line === CUT_LINE, `cursor was on line ${before}, now ${await cursorLine(page)}`);
    const details = flat(await frame.locator("#gt-details").innerText());
    check("the details line explains the cut", /detach — `\.detach\(\)` returns a tensor cut from the graph/.test(details), details);
    await screenshot(page, "clicked-cut");

    // 4. and a click on a dead parameter opens where it is defined
    await frame.locator("#gt-map .gt-param.gt-none").first().click();
    const defLine = await waitFor(async () => ((await cursorLine(page)) === 10 ? 10 : null), 15_000, 250);
    check("clicking a dead parameter moves the editor to its definition (line 10)", defLine === 10);

    // 5. the map follows a theme change: high contrast
    await page.keyboard.press("Escape");
    await page.keyboard.press("Control+K");
    await page.keyboard.press("Control+T");  // the color theme picker
    const themeInput = page.locator(".quick-input-widget input");
    await themeInput.waitFor({ timeout: 10_000 });
    await themeInput.fill("Dark High Contrast");
    await page.locator(".quick-input-list .monaco-list-row.focused", { hasText: "Dark High Contrast" }).first()
        .waitFor({ timeout: 10_000 });
    await page.keyboard.press("Enter");
    const hc = await waitFor(async () => {
        const f = await mapFrame(page);
        return f && (await f.locator("body.vscode-high-contrast #gt-map svg").count()) > 0 ? f : null;
    }, 30_000);
    check("switching VS Code to high contrast restyles the map", !!hc);
    if (hc) {
        const look = await hc.evaluate(() => {
            const sel = "#gt-map .gt-param.gt-none:not(.gt-selected)";
            const shape = document.querySelector(`${sel} path, ${sel} polygon`);
            return { fill: getComputedStyle(shape).fill, stroke: getComputedStyle(shape).stroke,
                bg: getComputedStyle(document.body).backgroundColor };
        });
        check("in high contrast dead parameters are outlined on the plain background",
            look.bg === "rgb(0, 0, 0)" && ["rgb(0, 0, 0)", "color(srgb 0 0 0)"].includes(look.fill) &&
            /^rgb\((\d+), (\d+), (\d+)\)$/.test(look.stroke) && look.stroke !== "rgb(0, 0, 0)", JSON.stringify(look));
        await page.waitForTimeout(500);
        await screenshot(page, "high-contrast");
    }
}

async function main() {
    if (!VSIX || !fs.existsSync(VSIX)) {
        throw new Error(`GRADTRACE_VSIX must name the packaged extension (got ${VSIX})`);
    }
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const cs = await startCodeServer();
    const udd = fs.mkdtempSync(path.join(TOOLS, "runs", "chromium-"));
    const ctx = await chromium.launchPersistentContext(udd, {
        executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
        headless: true,
        viewport: { width: 1500, height: 900 },
        args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const page = ctx.pages()[0] || (await ctx.newPage());
    let ok = false;
    try {
        await scenario(page, cs);
        ok = true;
    } catch (err) {
        check("gradient map scenario ran to the end", false, String((err && err.stack) || err));
        await screenshot(page, "failure").catch(() => undefined);
    } finally {
        await ctx.close().catch(() => undefined);
        fs.rmSync(udd, { recursive: true, force: true });
        await cs.stop();
        fs.copyFileSync(path.join(cs.run, "code-server.log"), path.join(ARTIFACTS, "gradient-map-code-server.log"));
        if (ok && results.every((r) => r.ok)) {
            fs.rmSync(cs.run, { recursive: true, force: true });
        } else {
            say(`run directory kept for inspection: ${cs.run}`);
        }
    }
}

main()
    .catch((err) => check("gradient map e2e driver", false, String((err && err.stack) || err)))
    .finally(() => {
        const passed = results.filter((r) => r.ok).length;
        const failed = results.length - passed;
        for (const r of results.filter((x) => !x.ok)) {
            console.log(`FAILED: ${r.name}${r.detail ? ` — ${r.detail}` : ""}`);
        }
        console.log(`gradient-map e2e: ${passed} passed, ${failed} failed`);
        process.exit(failed === 0 && passed > 0 ? 0 : 1);
    });
