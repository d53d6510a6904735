/** gradtrace for VS Code: starts the language server and wires the commands; the logic lives in common/. */

import * as vscode from "vscode";
import * as path from "node:path";
import { registerCommands } from "./common/commands";
import { COMMAND_RESTART, COMMAND_SHOW_LOGS, CONFIG_SECTION, RESTART_DELAY_MS, RESTART_SETTINGS } from "./common/constants";
import { createLogChannel, log } from "./common/logging";
import { registerProbeCommand } from "./common/probe";
import { onDidChangeSelectedInterpreter } from "./common/python";
import { RuleDocs } from "./common/ruleDocs";
import { ServerManager, setLogChannel } from "./common/server";
import { createStatusItem } from "./common/status";
import { registerGradientMap } from "./gradientMap/gradientMap";

let manager: ServerManager | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    const channel = createLogChannel();
    setLogChannel(channel);
    context.subscriptions.push(channel, createStatusItem());
    const manifest = context.extension.packageJSON as { version?: string };
    log.info(`gradtrace extension ${manifest.version ?? "?"} activating`);

    const servers = new ServerManager(context);
    manager = servers;
    context.subscriptions.push(servers);

    let restartTimer: NodeJS.Timeout | undefined;
    const restartSoon = (reason: string, onlyIfChanged: boolean) => {
        clearTimeout(restartTimer);
        restartTimer = setTimeout(() => {
            void (onlyIfChanged ? servers.restartIfResolutionChanged(reason) : servers.restart(reason));
        }, RESTART_DELAY_MS);
    };

    context.subscriptions.push(
        vscode.commands.registerCommand(COMMAND_SHOW_LOGS, () => log.show()),
        vscode.commands.registerCommand(COMMAND_RESTART, () => servers.restart("gradtrace.restart")),
        registerProbeCommand(servers),
        registerCommands(context, servers),
        new RuleDocs(servers, context.asAbsolutePath(path.join("extension", "bundled", "libs", "common", "gradtrace", "docs", "rules"))),
        registerGradientMap(context, servers),
        vscode.workspace.onDidChangeConfiguration((e) => {
            if (RESTART_SETTINGS.some((key) => e.affectsConfiguration(key))) {
                restartSoon("the interpreter or import strategy setting changed", true);
            } else if (e.affectsConfiguration(CONFIG_SECTION)) {
                void servers.settingsChanged();
            }
        }),
        vscode.workspace.onDidGrantWorkspaceTrust(() => {
            log.info("the workspace is now trusted: restarting with the probe and the user's settings enabled");
            restartSoon("workspace trust granted", false);
        }),
        { dispose: () => clearTimeout(restartTimer) },
    );
    const pythonWatch = await onDidChangeSelectedInterpreter(() =>
        restartSoon("the Python extension's selected environment changed", true),
    );
    if (pythonWatch) {
        context.subscriptions.push(pythonWatch);
    }
    // Do not block activation on the server: commands and the status item are available at once.
    void servers.start("activation");
}

export async function deactivate(): Promise<void> {
    await manager?.stop();
}
