/**
 * Which Python runs the language server (pure logic, no VS Code API: unit-tested).
 *
 * Order, first that applies:
 *   1. `gradtrace.interpreter`: an explicit choice. In an untrusted workspace only the value from the
 *      user's own settings counts, never one from the workspace.
 *   2. the environment selected in the Python extension, when it is installed; not in an untrusted
 *      workspace, where that environment may live inside the workspace (a `.venv` of unknown origin).
 *   3. `python3` on PATH.
 */

export type InterpreterSource = "setting" | "python-extension" | "path";

export interface InterpreterInputs {
    trusted: boolean;
    /** `gradtrace.interpreter` from the user's settings (global scope). */
    userSetting: readonly string[] | undefined;
    /** `gradtrace.interpreter` from the workspace or folder settings. */
    workspaceSetting: readonly string[] | undefined;
    /** The Python extension's active environment executable, when it is installed and has one. */
    pythonExtension: string | undefined;
    /** Values for `${workspaceFolder}`, `${userHome}` and `${env:NAME}`. */
    variables: VariableContext;
}

export interface VariableContext {
    workspaceFolder?: string;
    userHome?: string;
    env?: Readonly<Record<string, string | undefined>>;
}

export interface InterpreterChoice {
    /** The executable followed by any arguments, e.g. ["/usr/bin/python3"] or ["conda", "run", "-n", "x", "python"]. */
    command: string[];
    source: InterpreterSource;
    /** A sentence for the log when a choice was passed over, e.g. a workspace value in an untrusted workspace. */
    note?: string;
}

export const DEFAULT_PYTHON = "python3";

/** Expand `${workspaceFolder}`, `${userHome}`, `${env:NAME}` and a leading `~`. Unknown variables stay as they are. */
export function expandVariables(value: string, ctx: VariableContext): string {
    let out = value.replace(/\$\{(workspaceFolder|userHome|env:([A-Za-z_][A-Za-z0-9_]*))\}/g, (whole, name: string, envName?: string) => {
        if (envName !== undefined) {
            return ctx.env?.[envName] ?? "";
        }
        if (name === "workspaceFolder") {
            return ctx.workspaceFolder ?? whole;
        }
        return ctx.userHome ?? whole;
    });
    if (ctx.userHome && (out === "~" || out.startsWith("~/"))) {
        out = ctx.userHome + out.slice(1);
    }
    return out;
}

function clean(setting: readonly string[] | undefined): string[] | undefined {
    if (!setting) {
        return undefined;
    }
    const items = setting.filter((s) => typeof s === "string" && s.trim() !== "");
    return items.length > 0 ? items : undefined;
}

export function chooseInterpreter(inputs: InterpreterInputs): InterpreterChoice {
    const notes: string[] = [];
    const workspace = clean(inputs.workspaceSetting);
    const user = clean(inputs.userSetting);
    let explicit: string[] | undefined;
    if (workspace && inputs.trusted) {
        explicit = workspace;
    } else {
        if (workspace) {
            notes.push(
                `the workspace's gradtrace.interpreter (${workspace.join(" ")}) is ignored because the workspace is not trusted`,
            );
        }
        explicit = user;
    }
    const finish = (choice: InterpreterChoice): InterpreterChoice =>
        notes.length > 0 ? { ...choice, note: notes.join("; ") } : choice;
    if (explicit) {
        return finish({
            command: explicit.map((part) => expandVariables(part, inputs.variables)),
            source: "setting",
        });
    }
    if (inputs.pythonExtension) {
        if (inputs.trusted) {
            return finish({ command: [inputs.pythonExtension], source: "python-extension" });
        }
        notes.push(
            `the Python extension's environment (${inputs.pythonExtension}) is not used because the workspace is not trusted`,
        );
    }
    return finish({ command: [DEFAULT_PYTHON], source: "path" });
}

export function describeSource(source: InterpreterSource): string {
    switch (source) {
        case "setting":
            return "gradtrace.interpreter";
        case "python-extension":
            return "the Python extension's selected environment";
        case "path":
            return "python3 on PATH";
    }
}
