/**
 * gradtrace.showGradientMap: a webview beside the editor with the picture of where the gradient flows and
 * where it stops. The server draws it (`gradtrace.gradientMap`: the last probe result of the file, else its
 * static findings); the webview themes it with the editor's colours and sends clicks back to open the line.
 * It refreshes after each probe (the probe's diagnostics change) and when the file is saved.
 */

import { randomBytes } from "node:crypto";
import * as path from "node:path";
import * as vscode from "vscode";
import { ExecuteCommandRequest, ResponseError } from "vscode-languageclient/node";
import { COMMAND_PROBE } from "../common/constants";
import { log } from "../common/logging";
import { ServerManager } from "../common/server";

export const COMMAND_SHOW_GRADIENT_MAP = "gradtrace.showGradientMap";
const SERVER_COMMAND = "gradtrace.gradientMap";
const VIEW_TYPE = "gradtrace.gradientMap";
const REFRESH_DELAY_MS = 300;

/** Messages from the webview. */
type FromWebview =
    | { type: "ready" }
    | { type: "open"; path: string; line: number }
    | { type: "probe" }
    | { type: "refresh" };

class GradientMapPanel implements vscode.Disposable {
    private readonly disposables: vscode.Disposable[] = [];
    private timer: NodeJS.Timeout | undefined;
    private generation = -1;
    private ready = false;
    private pending = false;

    constructor(
        readonly panel: vscode.WebviewPanel,
        public uri: vscode.Uri,
        private readonly manager: ServerManager,
        private readonly mediaRoot: vscode.Uri,
        private editorColumn: vscode.ViewColumn | undefined,
        onDispose: () => void,
    ) {
        panel.webview.html = this.html();
        this.disposables.push(
            panel.onDidDispose(() => {
                onDispose();
                this.dispose();
            }),
            panel.webview.onDidReceiveMessage((m: FromWebview) => void this.onMessage(m)),
            vscode.languages.onDidChangeDiagnostics((e) => {
                if (e.uris.some((u) => u.toString() === this.uri.toString())) {
                    this.scheduleRefresh();
                }
            }),
            vscode.workspace.onDidSaveTextDocument((doc) => {
                if (doc.uri.toString() === this.uri.toString()) {
                    this.scheduleRefresh();
                }
            }),
            vscode.workspace.onDidGrantWorkspaceTrust(() => {
                this.ready = false; // the page is rebuilt with its "Run probe" button
                panel.webview.html = this.html();
            }),
            panel.onDidChangeViewState((e) => {
                if (e.webviewPanel.visible && this.pending) {
                    this.scheduleRefresh();
                }
            }),
        );
    }

    show(uri: vscode.Uri, editorColumn: vscode.ViewColumn | undefined): void {
        const changed = uri.toString() !== this.uri.toString();
        this.uri = uri;
        this.editorColumn = editorColumn ?? this.editorColumn;
        this.panel.reveal(undefined, true);
        if (changed) {
            this.generation = -1;
        }
        void this.refresh(true);
    }

    private scheduleRefresh(): void {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => void this.refresh(false), REFRESH_DELAY_MS);
    }

    async refresh(force: boolean): Promise<void> {
        if (!this.ready) {
            this.pending = true;
            return;
        }
        if (!this.panel.visible && !force) {
            this.pending = true;
            return;
        }
        this.pending = false;
        const name = path.basename(this.uri.fsPath);
        this.panel.title = `Gradient map: ${name}`;
        const client = this.manager.languageClient;
        if (!client) {
            const why = this.manager.startError ? ` ${this.manager.startError}` : "";
            void this.post({ type: "error", message: `The gradtrace language server is not running.${why}` });
            return;
        }
        if (!this.manager.serverCommands().includes(SERVER_COMMAND)) {
            void this.post({
                type: "error",
                message: `This gradtrace server (${this.manager.serverInfo?.version ?? "?"}) cannot draw the gradient map.`,
            });
            return;
        }
        try {
            void this.post({ type: "loading", name });
            const map = (await client.sendRequest(ExecuteCommandRequest.type, {
                command: SERVER_COMMAND,
                arguments: [this.uri.toString()],
            })) as { generation?: number; source?: string; summary?: string } | null;
            if (!map) {
                return;
            }
            this.generation = map.generation ?? this.generation;
            log.info(`gradient map of ${name}: ${map.source ?? "?"}, ${map.summary ?? ""}`);
            void this.post({ type: "map", map });
        } catch (err) {
            const message = err instanceof ResponseError || err instanceof Error ? err.message : String(err);
            log.error(`gradient map of ${name} failed: ${message}`);
            void this.post({ type: "error", message });
        }
    }

    private post(message: unknown): Thenable<boolean> {
        return this.panel.webview.postMessage(message);
    }

    private async onMessage(m: FromWebview): Promise<void> {
        switch (m.type) {
            case "ready":
                this.ready = true;
                await this.refresh(true);
                return;
            case "refresh":
                await this.refresh(true);
                return;
            case "probe":
                if (!vscode.workspace.isTrusted) {
                    return; // no button in Restricted Mode; a stale page's message runs nothing
                }
                await vscode.commands.executeCommand(COMMAND_PROBE, this.uri);
                await this.refresh(true);
                return;
            case "open":
                await this.open(m.path, m.line);
                return;
        }
    }

    private async open(file: string, line: number): Promise<void> {
        if (typeof file !== "string" || !file || !Number.isInteger(line) || line < 1) {
            return;
        }
        const target = path.isAbsolute(file) ? vscode.Uri.file(file) : vscode.Uri.joinPath(this.uri, "..", file);
        const pos = new vscode.Position(line - 1, 0);
        const column =
            vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === target.toString())?.viewColumn ??
            this.editorColumn ??
            vscode.ViewColumn.One;
        const editor = await vscode.window.showTextDocument(target, {
            viewColumn: column,
            selection: new vscode.Range(pos, pos),
            preserveFocus: false,
        });
        const text = editor.document.lineAt(Math.min(line - 1, editor.document.lineCount - 1));
        const start = new vscode.Position(text.lineNumber, text.firstNonWhitespaceCharacterIndex);
        // the line selected, the cursor at its start (so a long line does not scroll the editor sideways)
        editor.selection = new vscode.Selection(text.range.end, start);
        editor.revealRange(new vscode.Range(start, start), vscode.TextEditorRevealType.InCenterIfOutsideViewport);
    }

    private html(): string {
        const webview = this.panel.webview;
        const nonce = randomBytes(16).toString("base64");
        const script = webview.asWebviewUri(vscode.Uri.joinPath(this.mediaRoot, "map.js"));
        const style = webview.asWebviewUri(vscode.Uri.joinPath(this.mediaRoot, "map.css"));
        const csp = [
            "default-src 'none'",
            `img-src ${webview.cspSource} data:`,
            `style-src ${webview.cspSource} 'nonce-${nonce}'`,
            `script-src 'nonce-${nonce}'`,
            `font-src ${webview.cspSource}`,
        ].join("; ");
        // The probe runs the file's code: not offered in Restricted Mode (an untrusted workspace).
        const probeButton = vscode.workspace.isTrusted
            ? `<button id="gt-probe" type="button" title="Run the probe on this file and redraw">Run probe</button>\n`
            : "";
        return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="${style.toString()}">
<title>Gradient map</title></head>
<body>
<div class="gt-bar"><span class="gt-kind" id="gt-kind">…</span><span class="gt-summary" id="gt-summary">Loading the gradient map…</span>
${probeButton}<button id="gt-fit" type="button" title="Fit the picture to the panel, or show it at full size">Fit / actual size</button></div>
<div id="gt-notes"></div>
<div id="gt-details">Click a parameter, module or cut to open its line.</div>
<div id="gt-map" class="gt-fit"></div>
<script nonce="${nonce}" src="${script.toString()}"></script>
</body></html>`;
    }

    dispose(): void {
        clearTimeout(this.timer);
        for (const d of this.disposables.splice(0)) {
            d.dispose();
        }
    }
}

function targetUri(arg: unknown): vscode.Uri | undefined {
    if (arg instanceof vscode.Uri) {
        return arg;
    }
    if (typeof arg === "string" && arg !== "") {
        return vscode.Uri.parse(arg);
    }
    const editor = vscode.window.activeTextEditor;
    return editor && editor.document.languageId === "python" ? editor.document.uri : undefined;
}

/** Registers gradtrace.showGradientMap; one panel, which follows the file it was last opened for. */
export function registerGradientMap(context: vscode.ExtensionContext, manager: ServerManager): vscode.Disposable {
    let current: GradientMapPanel | undefined;
    const mediaRoot = vscode.Uri.joinPath(context.extensionUri, "media", "gradient-map");
    const command = vscode.commands.registerCommand(COMMAND_SHOW_GRADIENT_MAP, (arg?: unknown) => {
        const uri = targetUri(arg);
        if (!uri) {
            void vscode.window.showWarningMessage("gradtrace: open a Python file to see its gradient map.");
            return;
        }
        const editorColumn = vscode.window.activeTextEditor?.viewColumn;
        if (current) {
            current.show(uri, editorColumn);
            return;
        }
        const panel = vscode.window.createWebviewPanel(
            VIEW_TYPE,
            `Gradient map: ${path.basename(uri.fsPath)}`,
            { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true },
            { enableScripts: true, localResourceRoots: [mediaRoot], retainContextWhenHidden: false },
        );
        current = new GradientMapPanel(panel, uri, manager, mediaRoot, editorColumn, () => {
            current = undefined;
        });
    });
    return vscode.Disposable.from(command, {
        dispose: () => {
            current?.panel.dispose();
        },
    });
}
