/** The language status item: which interpreter and server version are in use, or why none runs. */

import * as vscode from "vscode";
import { COMMAND_SHOW_LOGS } from "./constants";

const SELECTOR: vscode.DocumentSelector = [
    { language: "python" },
    { notebookType: "jupyter-notebook", language: "python" },
];

let item: vscode.LanguageStatusItem | undefined;

export function createStatusItem(): vscode.LanguageStatusItem {
    item = vscode.languages.createLanguageStatusItem("gradtrace.status", SELECTOR);
    item.name = "gradtrace";
    item.command = { title: "Show logs", command: COMMAND_SHOW_LOGS };
    setStarting();
    return item;
}

export function setStarting(): void {
    if (!item) {
        return;
    }
    item.busy = true;
    item.severity = vscode.LanguageStatusSeverity.Information;
    item.text = "gradtrace: starting";
    item.detail = undefined;
}

export function setRunning(version: string, detail: string): void {
    if (!item) {
        return;
    }
    item.busy = false;
    item.severity = vscode.LanguageStatusSeverity.Information;
    item.text = `gradtrace ${version}`;
    item.detail = detail;
}

export function setFailed(reason: string): void {
    if (!item) {
        return;
    }
    item.busy = false;
    item.severity = vscode.LanguageStatusSeverity.Error;
    item.text = "gradtrace: not running";
    item.detail = reason;
}
