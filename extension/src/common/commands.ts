/** The palette commands that act on the current file or describe the set-up: fix all, debug information. */

import { spawn } from "node:child_process";
import * as os from "node:os";
import * as vscode from "vscode";
import { COMMAND_DEBUG_INFO, COMMAND_FIX_ALL } from "./constants";
import { launcherCommand } from "./launch";
import { log } from "./logging";
import type { ServerManager } from "./server";

export const FIX_ALL_KIND = vscode.CodeActionKind.SourceFixAll.append("gradtrace");
const CHECK_TIMEOUT_MS = 30_000;

/** gradtrace.fixAll: apply every safe fix in the active Python file (the server's source.fixAll.gradtrace). */
export async function fixAll(manager: ServerManager): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (!editor || editor.document.languageId !== "python") {
        void vscode.window.showWarningMessage("gradtrace: open a Python file to fix its problems.");
        return;
    }
    if (!manager.languageClient) {
        void vscode.window.showErrorMessage("gradtrace: the language server is not running; see gradtrace: Show Logs.");
        return;
    }
    const doc = editor.document;
    const whole = new vscode.Range(0, 0, doc.lineCount, 0);
    const actions =
        (await vscode.commands.executeCommand<vscode.CodeAction[]>(
            "vscode.executeCodeActionProvider",
            doc.uri,
            whole,
            FIX_ALL_KIND.value,
            10,
        )) ?? [];
    const edit = actions.find((a) => a.kind && FIX_ALL_KIND.contains(a.kind) && a.edit && a.edit.size > 0)?.edit;
    if (!edit) {
        void vscode.window.showInformationMessage("gradtrace: no auto-fixable problems in this file.");
        return;
    }
    const applied = await vscode.workspace.applyEdit(edit);
    log.info(`fix all on ${doc.uri.fsPath}: ${applied ? "applied" : "not applied"}`);
    if (!applied) {
        void vscode.window.showErrorMessage("gradtrace: the fixes could not be applied (the file changed meanwhile?).");
    }
}

/** The launcher's `--check` (it imports everything the server and its analysis need), as text. */
function runCheck(manager: ServerManager): Promise<string> {
    const info = manager.serverInfo;
    if (!info) {
        return Promise.resolve("not run (no server)");
    }
    const { command, args } = launcherCommand(info.interpreter.command, info.strategy, manager.launchPaths, true);
    return new Promise((resolve) => {
        let out = "";
        const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
        const timer = setTimeout(() => child.kill("SIGKILL"), CHECK_TIMEOUT_MS);
        child.stdout.on("data", (d: Buffer) => (out += d.toString()));
        child.stderr.on("data", (d: Buffer) => (out += d.toString()));
        child.on("error", (err) => resolve(`could not run: ${err.message}`));
        child.on("close", () => {
            clearTimeout(timer);
            resolve(out.trim().split(/\r?\n/).pop() ?? "");
        });
    });
}

/** gradtrace.printDebugInformation: what runs, where from, with which settings; into the log, shown. */
export async function printDebugInformation(context: vscode.ExtensionContext, manager: ServerManager): Promise<void> {
    const info = manager.serverInfo;
    const report = info?.report;
    const client = manager.languageClient;
    const caps = client?.initializeResult?.capabilities;
    const lines = [
        "gradtrace debug information",
        `extension: ${String((context.extension.packageJSON as { version?: string }).version)} at ${context.extensionPath}`,
        `editor: ${vscode.env.appName} ${vscode.version} (${vscode.env.appHost}, ${vscode.env.uiKind === vscode.UIKind.Web ? "web" : "desktop"}); ${os.platform()} ${os.arch()}`,
        `workspace: ${(vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath).join(", ") || "(none)"}; trusted: ${vscode.workspace.isTrusted}`,
        `server: ${client ? `gradtrace ${info?.version ?? "?"}, running` : `not running${manager.startError ? `: ${manager.startError}` : ""}`}`,
        `interpreter: ${info ? `${info.interpreter.command.join(" ")} (from ${info.interpreter.source})` : "?"}; import strategy: ${info?.strategy ?? "?"}`,
        `python: ${report ? `${report.python} at ${report.executable}` : "?"}; byte code: ${report?.bytecode ?? "?"}`,
        `bundled packages: ${report?.paths.join(", ") || "(not used)"}`,
        `capabilities: position encoding ${caps?.positionEncoding ?? "utf-16"}; pull diagnostics ${caps?.diagnosticProvider ? "yes" : "no"}; commands ${(caps?.executeCommandProvider?.commands ?? []).join(", ")}`,
        `settings sent to the server: ${JSON.stringify(manager.sentSettings ?? null)}`,
        `start-up check: ${await runCheck(manager)}`,
    ];
    for (const line of lines) {
        log.info(line);
    }
    log.show();
}

export function registerCommands(context: vscode.ExtensionContext, manager: ServerManager): vscode.Disposable {
    return vscode.Disposable.from(
        vscode.commands.registerCommand(COMMAND_FIX_ALL, () => fixAll(manager)),
        vscode.commands.registerCommand(COMMAND_DEBUG_INFO, () => printDebugInformation(context, manager)),
    );
}
