/** The Python extension's selected environment, when that extension is installed (it is optional). */

import * as vscode from "vscode";
import { PVSC_EXTENSION_ID, PythonExtension } from "@vscode/python-extension";
import { log } from "./logging";

let api: PythonExtension | undefined;

async function getApi(): Promise<PythonExtension | undefined> {
    if (api) {
        return api;
    }
    if (!vscode.extensions.getExtension(PVSC_EXTENSION_ID)) {
        return undefined;
    }
    try {
        api = await PythonExtension.api();
        return api;
    } catch (err) {
        log.warn(`the Python extension is installed but its API is not available: ${String(err)}`);
        return undefined;
    }
}

/** The executable of the environment selected for `resource`, or undefined. */
export async function selectedInterpreter(resource: vscode.Uri | undefined): Promise<string | undefined> {
    const python = await getApi();
    if (!python) {
        return undefined;
    }
    try {
        const path = python.environments.getActiveEnvironmentPath(resource);
        const env = await python.environments.resolveEnvironment(path);
        return env?.executable.uri?.fsPath;
    } catch (err) {
        log.warn(`could not resolve the Python extension's environment: ${String(err)}`);
        return undefined;
    }
}

/** Calls `listener` when the user selects another environment in the Python extension. */
export async function onDidChangeSelectedInterpreter(listener: () => void): Promise<vscode.Disposable | undefined> {
    const python = await getApi();
    return python?.environments.onDidChangeActiveEnvironmentPath(() => listener());
}
