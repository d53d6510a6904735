/** gradtrace.probe: run the sandboxed forward/backward on the current file, through the server. */

import { randomUUID } from "node:crypto";
import * as path from "node:path";
import * as vscode from "vscode";
import { ExecuteCommandRequest, ResponseError, WorkDoneProgress } from "vscode-languageclient/node";
import { COMMAND_PROBE, COMMAND_SHOW_LOGS } from "./constants";
import { log } from "./logging";
import { summariseProbeResult } from "./probeResult";
import { ServerManager } from "./server";
import { getSettings } from "./settings";

export const UNTRUSTED_PROBE_MESSAGE =
    "gradtrace: the probe is disabled in an untrusted workspace, because it runs this file's code " +
    "(a forward and backward pass in your Python interpreter). Trust the workspace to use it; " +
    "static analysis keeps working meanwhile.";

/** The Python document the command applies to: the argument, the active editor, or the active notebook. */
function targetUri(arg: unknown): vscode.Uri | undefined {
    if (arg instanceof vscode.Uri) {
        return arg;
    }
    if (typeof arg === "string" && arg !== "") {
        return vscode.Uri.parse(arg);
    }
    const notebook = vscode.window.activeNotebookEditor?.notebook;
    const editor = vscode.window.activeTextEditor;
    if (editor && editor.document.uri.scheme !== "vscode-notebook-cell") {
        return editor.document.languageId === "python" ? editor.document.uri : undefined;
    }
    return notebook?.uri;
}

async function saveIfDirty(uri: vscode.Uri): Promise<boolean> {
    const doc = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri.toString());
    if (doc?.isDirty) {
        log.info(`saving ${uri.fsPath} before probing it (the probe runs the file on disk)`);
        return doc.save();
    }
    const nb = vscode.workspace.notebookDocuments.find((d) => d.uri.toString() === uri.toString());
    if (nb?.isDirty) {
        log.info(`saving ${uri.fsPath} before probing it`);
        return nb.save();
    }
    return true;
}

export function registerProbeCommand(manager: ServerManager): vscode.Disposable {
    return vscode.commands.registerCommand(COMMAND_PROBE, async (arg?: unknown) => {
        if (!vscode.workspace.isTrusted) {
            log.warn("probe refused: the workspace is not trusted");
            const choice = await vscode.window.showWarningMessage(UNTRUSTED_PROBE_MESSAGE, "Manage Workspace Trust");
            if (choice) {
                await vscode.commands.executeCommand("workbench.trust.manage");
            }
            return undefined;
        }
        const uri = targetUri(arg);
        if (!uri) {
            void vscode.window.showWarningMessage("gradtrace: open a Python file or notebook to probe it.");
            return undefined;
        }
        if (!getSettings().settings.probe.enable) {
            const choice = await vscode.window.showInformationMessage(
                "gradtrace: the probe is turned off (gradtrace.probe.enable).",
                "Open settings",
            );
            if (choice) {
                await vscode.commands.executeCommand("workbench.action.openSettings", "gradtrace.probe.enable");
            }
            return undefined;
        }
        const client = manager.languageClient;
        if (!client) {
            const why = manager.startError ? ` ${manager.startError}` : "";
            void showError(`gradtrace: the probe needs the language server, which is not running.${why}`);
            return undefined;
        }
        if (!manager.serverCommands().includes(COMMAND_PROBE)) {
            void showError(
                `gradtrace: the probe is not available in this server (gradtrace ${manager.serverInfo?.version ?? "?"}).`,
            );
            return undefined;
        }
        if (!(await saveIfDirty(uri))) {
            void showError(`gradtrace: could not save ${path.basename(uri.fsPath)}; the probe runs the saved file.`);
            return undefined;
        }
        const name = path.basename(uri.fsPath);
        return vscode.window.withProgress(
            {
                location: vscode.ProgressLocation.Notification,
                title: `gradtrace: probing ${name}`,
                cancellable: true,
            },
            async (progress, token) => {
                const workDoneToken = randomUUID();
                const sub = client.onProgress(WorkDoneProgress.type, workDoneToken, (value) => {
                    if (value.kind !== "end" && value.message) {
                        progress.report({ message: value.message });
                    }
                });
                const started = Date.now();
                log.info(`probe: ${uri.fsPath}`);
                try {
                    const result: unknown = await client.sendRequest(
                        ExecuteCommandRequest.type,
                        { command: COMMAND_PROBE, arguments: [uri.toString()], workDoneToken },
                        token,
                    );
                    const seconds = ((Date.now() - started) / 1000).toFixed(1);
                    const summary = summariseProbeResult(result);
                    log.info(`probe finished in ${seconds} s: ${summary.text}`);
                    if (summary.level === "error") {
                        void showError(`gradtrace probe (${name}): ${summary.text}`);
                    } else if (summary.level === "warning") {
                        void vscode.window.showWarningMessage(`gradtrace probe (${name}): ${summary.text}`);
                    } else {
                        void vscode.window.showInformationMessage(`gradtrace probe (${name}): ${summary.text}`);
                    }
                    return result;
                } catch (err) {
                    if (token.isCancellationRequested) {
                        log.info("probe cancelled");
                        void vscode.window.showInformationMessage(`gradtrace: probe of ${name} cancelled.`);
                        return undefined;
                    }
                    const message = err instanceof ResponseError || err instanceof Error ? err.message : String(err);
                    log.error(`probe failed: ${message}`);
                    void showError(`gradtrace probe (${name}) failed: ${message}`);
                    return undefined;
                } finally {
                    sub.dispose();
                }
            },
        );
    });
}

async function showError(message: string): Promise<void> {
    const choice = await vscode.window.showErrorMessage(message, "Show logs");
    if (choice) {
        await vscode.commands.executeCommand(COMMAND_SHOW_LOGS);
    }
}
