/** Reads the `gradtrace.*` settings through the VS Code API. */

import * as vscode from "vscode";
import { CONFIG_SECTION } from "./constants";
import { ExtensionSettings, SettingProblem, readSettings } from "./settingsModel";

/** The folder whose settings the (single) server uses: the first workspace folder, if any. */
export function settingsResource(): vscode.Uri | undefined {
    return vscode.workspace.workspaceFolders?.[0]?.uri;
}

export function getSettings(): { settings: ExtensionSettings; problems: SettingProblem[] } {
    const config = vscode.workspace.getConfiguration(CONFIG_SECTION, settingsResource());
    return readSettings((key) => config.get(key));
}

/** `gradtrace.interpreter` split by where it was set (only the user's own value counts when untrusted). */
export function interpreterSettingScopes(): { user?: string[]; workspace?: string[] } {
    const config = vscode.workspace.getConfiguration(CONFIG_SECTION, settingsResource());
    const inspected = config.inspect<string[]>("interpreter");
    return {
        user: inspected?.globalValue,
        workspace: inspected?.workspaceFolderValue ?? inspected?.workspaceValue,
    };
}
