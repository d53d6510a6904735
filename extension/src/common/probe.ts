/** gradtrace.probe: run the sandboxed forward/backward on the current file, through the server. */

import * as path from "node:path";
import * as vscode from "vscode";
import { ExecuteCommandRequest } from "vscode-languageclient/node";
import { COMMAND_PROBE, COMMAND_SHOW_LOGS } from "./constants";
import { log } from "./logging";
import { ProbeResult, probeOutcome } from "./probeOutcome";
import type { ServerManager } from "./server";
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
        // The server reports the run's steps as work-done progress (status bar) and its outcome as a
        // message; this notification is where the user can cancel it.
        return vscode.window.withProgress(
            { location: vscode.ProgressLocation.Notification, title: `gradtrace: probing ${name}`, cancellable: true },
            async (_progress, token) => {
                const started = Date.now();
                log.info(`probe: ${uri.fsPath}`);
                try {
                    const result = (await client.sendRequest(
                        ExecuteCommandRequest.type,
                        { command: COMMAND_PROBE, arguments: [uri.toString()] },
                        token,
                    )) as ProbeResult | null;
                    const seconds = ((Date.now() - started) / 1000).toFixed(1);
                    const outcome = probeOutcome(result, name);
                    if (outcome) {
                        const err = result?.error;
                        log.error(`probe of ${name} failed after ${seconds} s: ${result?.status ?? "?"}: ${err?.type ?? ""} ${err?.message ?? ""}`);
                        void showError(outcome.message, outcome.setting);
                    } else {
                        log.info(`probe of ${name}: ${result?.status ?? "?"} in ${seconds} s`);
                    }
                    return result;
                } catch (err) {
                    if (token.isCancellationRequested) {
                        log.info(`probe of ${name} cancelled`);
                        void vscode.window.showInformationMessage(`gradtrace: probe of ${name} cancelled.`);
                        return undefined;
                    }
                    const message = err instanceof Error ? err.message : String(err);
                    log.error(`probe of ${name} failed: ${message}`);
                    void showError(`gradtrace: the probe of ${name} failed (details in the log).`, "gradtrace.probe");
                    return undefined;
                }
            },
        );
    });
}

/** A short sentence with "Open settings" (at `setting`) and "Show logs". */
async function showError(message: string, setting = "gradtrace"): Promise<void> {
    const choice = await vscode.window.showErrorMessage(message, "Open settings", "Show logs");
    if (choice === "Show logs") {
        await vscode.commands.executeCommand(COMMAND_SHOW_LOGS);
    } else if (choice === "Open settings") {
        await vscode.commands.executeCommand("workbench.action.openSettings", setting);
    }
}
