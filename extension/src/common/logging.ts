/** The "gradtrace" log output channel, shared by the client and the server's window/logMessage. */

import * as vscode from "vscode";

let channel: vscode.LogOutputChannel | undefined;

export function createLogChannel(): vscode.LogOutputChannel {
    channel = vscode.window.createOutputChannel("gradtrace", { log: true });
    return channel;
}

function write(level: "trace" | "debug" | "info" | "warn" | "error", message: string): void {
    channel?.[level](message);
    if (process.env.CI === "true" || process.env.GRADTRACE_LOG_TO_CONSOLE) {
        // Visible in the extension host's log when tests run headless.
        console.log(`[gradtrace ${level}] ${message}`);
    }
}

export const log = {
    debug: (message: string) => write("debug", message),
    info: (message: string) => write("info", message),
    warn: (message: string) => write("warn", message),
    error: (message: string) => write("error", message),
    show: () => channel?.show(true),
};
