/** Server lifecycle: choose the interpreter, check it, start, restart and stop the language client. */

import { spawn } from "node:child_process";
import * as os from "node:os";
import * as path from "node:path";
import * as vscode from "vscode";
import {
    CloseAction,
    CloseHandlerResult,
    DidChangeConfigurationNotification,
    ErrorAction,
    ErrorHandler,
    ErrorHandlerResult,
    ExecuteCommandRequest,
    LanguageClient,
    LanguageClientOptions,
    Message,
    ResponseError,
    RevealOutputChannelOn,
    ServerOptions,
    State,
    TransportKind,
} from "vscode-languageclient/node";
import { CLIENT_OWNED_COMMANDS, COMMAND_SHOW_LOGS, CONFIG_SECTION, SERVER_ID, SERVER_NAME } from "./constants";
import { InterpreterChoice, chooseInterpreter, describeSource } from "./interpreter";
import {
    LaunchPaths,
    LauncherReport,
    SpawnFailure,
    describeStartProblem,
    launcherCommand,
    parseLauncherReport,
} from "./launch";
import { log } from "./logging";
import { selectedInterpreter } from "./python";
import { getSettings, interpreterSettingScopes, settingsResource } from "./settings";
import {
    ExtensionSettings,
    ImportStrategy,
    ServerSettings,
    didChangeConfigurationParams,
    effectiveImportStrategy,
    initializationOptions,
    toServerSettings,
} from "./settingsModel";
import * as status from "./status";

const CHECK_TIMEOUT_MS = 30_000;
const MAX_CRASHES = 3;
const CRASH_WINDOW_MS = 3 * 60_000;

/** What the running server is made of; shown in the status item and the log. */
export interface ServerInfo {
    interpreter: InterpreterChoice;
    strategy: ImportStrategy;
    report: LauncherReport;
    version: string;
}

/** Resolution inputs that decide whether a restart is needed (compared before restarting on events). */
interface Resolution {
    command: string[];
    strategy: ImportStrategy;
    trusted: boolean;
}

function sameResolution(a: Resolution | undefined, b: Resolution): boolean {
    return !!a && a.strategy === b.strategy && a.trusted === b.trusted && a.command.join("\0") === b.command.join("\0");
}

function runLauncherCheck(
    interpreter: string[],
    strategy: ImportStrategy,
    paths: LaunchPaths,
    cwd: string,
): Promise<{ report?: LauncherReport; failure?: SpawnFailure }> {
    const { command, args } = launcherCommand(interpreter, strategy, paths, true);
    log.debug(`start-up check: ${[command, ...args].join(" ")}`);
    return new Promise((resolve) => {
        let stdout = "";
        let stderr = "";
        let settled = false;
        const finish = (value: { report?: LauncherReport; failure?: SpawnFailure }) => {
            if (!settled) {
                settled = true;
                clearTimeout(timer);
                resolve(value);
            }
        };
        const child = spawn(command, args, { cwd, env: process.env, stdio: ["ignore", "pipe", "pipe"] });
        const timer = setTimeout(() => {
            child.kill("SIGKILL");
            finish({ failure: { timedOut: true, stderr } });
        }, CHECK_TIMEOUT_MS);
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.on("error", (err: NodeJS.ErrnoException) => finish({ failure: { code: err.code, stderr: err.message } }));
        child.on("close", (exitCode) => {
            const report = parseLauncherReport(stdout);
            finish(report ? { report } : { failure: { exitCode, stderr: stderr || stdout } });
        });
    });
}

export class ServerManager implements vscode.Disposable {
    private client: LanguageClient | undefined;
    private info: ServerInfo | undefined;
    private resolution: Resolution | undefined;
    private serverSettings: ServerSettings | undefined;
    private crashes: number[] = [];
    private busy: Promise<void> = Promise.resolve();
    private readonly paths: LaunchPaths;
    private lastError: string | undefined;

    constructor(context: vscode.ExtensionContext) {
        this.paths = {
            launcher: context.asAbsolutePath(path.join("extension", "bundled", "tool", "gradtrace_launcher.py")),
            libs: context.asAbsolutePath(path.join("extension", "bundled", "libs")),
        };
    }

    get languageClient(): LanguageClient | undefined {
        return this.client?.state === State.Running ? this.client : undefined;
    }

    get serverInfo(): ServerInfo | undefined {
        return this.info;
    }

    /** The reason the server is not running, when it failed to start. */
    get startError(): string | undefined {
        return this.lastError;
    }

    /** Serialise lifecycle operations: a restart requested during a start waits for it. */
    private queue(op: () => Promise<void>): Promise<void> {
        this.busy = this.busy.then(op, op);
        return this.busy;
    }

    start(reason: string): Promise<void> {
        return this.queue(() => this.doRestart(reason));
    }

    restart(reason: string): Promise<void> {
        return this.queue(() => this.doRestart(reason));
    }

    /** Restart only when the interpreter, import strategy or trust actually changed. */
    restartIfResolutionChanged(reason: string): Promise<void> {
        return this.queue(async () => {
            const { resolution } = await this.resolve(getSettings().settings);
            if (sameResolution(this.resolution, resolution) && this.client) {
                log.debug(`${reason}: the server's interpreter is unchanged, no restart`);
                return;
            }
            await this.doRestart(reason);
        });
    }

    stop(): Promise<void> {
        return this.queue(() => this.doStop());
    }

    private async resolve(settings: ExtensionSettings): Promise<{
        resolution: Resolution;
        choice: InterpreterChoice;
        refused?: string;
    }> {
        const trusted = vscode.workspace.isTrusted;
        const scopes = interpreterSettingScopes();
        const resource = settingsResource();
        const choice = chooseInterpreter({
            trusted,
            userSetting: scopes.user,
            workspaceSetting: scopes.workspace,
            pythonExtension: await selectedInterpreter(resource),
            variables: { workspaceFolder: resource?.fsPath, userHome: os.homedir(), env: process.env },
        });
        const { strategy, refused } = effectiveImportStrategy(settings.importStrategy, trusted);
        return { resolution: { command: choice.command, strategy, trusted }, choice, refused };
    }

    private async doStop(): Promise<void> {
        const client = this.client;
        this.client = undefined;
        this.info = undefined;
        if (client) {
            try {
                await client.stop(5000);
            } catch (err) {
                log.warn(`stopping the server: ${String(err)}`);
            }
            await client.dispose().catch(() => undefined);
        }
    }

    private async doRestart(reason: string): Promise<void> {
        log.info(`${this.client ? "restarting" : "starting"} the server: ${reason}`);
        await this.doStop();
        status.setStarting();
        this.lastError = undefined;

        const { settings, problems } = getSettings();
        for (const p of problems) {
            log.warn(`setting gradtrace.${p.key}: ${p.message}; using the default`);
        }
        const { resolution, choice, refused } = await this.resolve(settings);
        this.resolution = resolution;
        if (choice.note) {
            log.warn(choice.note);
        }
        if (refused) {
            log.warn(refused);
            void vscode.window.showWarningMessage(`gradtrace: ${refused}`);
        }
        log.info(
            `interpreter: ${choice.command.join(" ")} (from ${describeSource(choice.source)}); ` +
                `import strategy: ${resolution.strategy}; workspace trusted: ${resolution.trusted}`,
        );

        const cwd = settingsResource()?.fsPath ?? os.homedir();
        const { report, failure } = await runLauncherCheck(choice.command, resolution.strategy, this.paths, cwd);
        const problem = describeStartProblem(choice.command, report, failure);
        if (problem || !report) {
            this.fail(problem ?? "the start-up check gave no answer");
            return;
        }
        log.info(
            `Python ${report.python} at ${report.executable}; gradtrace ${report.gradtrace ?? "?"} ` +
                `(${resolution.strategy === "useBundled" ? `bundled: ${report.paths.join(", ")}` : "from the environment"})`,
        );

        this.serverSettings = toServerSettings(settings, {
            interpreter: report.executable ? [report.executable] : choice.command,
            importStrategy: resolution.strategy,
            workspaceTrusted: resolution.trusted,
        });
        const client = this.createClient(choice.command, resolution.strategy, cwd);
        this.client = client;
        try {
            await client.start();
        } catch (err) {
            this.client = undefined;
            await client.dispose().catch(() => undefined);
            this.fail(`the language server did not start: ${err instanceof Error ? err.message : String(err)}`);
            return;
        }
        const serverVersion = client.initializeResult?.serverInfo?.version ?? report.gradtrace ?? "?";
        this.info = { interpreter: choice, strategy: resolution.strategy, report, version: serverVersion };
        const where = resolution.strategy === "useBundled" ? "bundled server" : "server from the environment";
        status.setRunning(serverVersion, `Python ${report.python} (${report.executable}) · ${where}`);
        log.info(`server ${serverVersion} running`);
    }

    private fail(reason: string): void {
        this.lastError = reason;
        log.error(`the server cannot start: ${reason}`);
        status.setFailed(reason);
        void vscode.window
            .showErrorMessage(`gradtrace: the language server cannot start. ${reason}`, "Show logs", "Open settings")
            .then((choice) => {
                if (choice === "Show logs") {
                    void vscode.commands.executeCommand(COMMAND_SHOW_LOGS);
                } else if (choice === "Open settings") {
                    void vscode.commands.executeCommand("workbench.action.openSettings", "gradtrace.interpreter");
                }
            });
    }

    private createClient(interpreter: string[], strategy: ImportStrategy, cwd: string): LanguageClient {
        const { command, args } = launcherCommand(interpreter, strategy, this.paths, false);
        const serverOptions: ServerOptions = {
            command,
            args,
            transport: TransportKind.stdio,
            options: { cwd, env: { ...process.env, PYTHONUNBUFFERED: "1" } },
        };
        const clientOptions: LanguageClientOptions = {
            documentSelector: [
                { scheme: "file", language: "python" },
                { scheme: "untitled", language: "python" },
                { notebook: { notebookType: "jupyter-notebook" }, language: "python" },
            ],
            outputChannel: logChannelOf(),
            traceOutputChannel: logChannelOf(),
            revealOutputChannelOn: RevealOutputChannelOn.Never,
            diagnosticCollectionName: SERVER_ID,
            // Pull diagnostics for every Python file open in a tab (not only the instantiated ones), so
            // the Problems panel is complete after a restart; and after a save, for lint.run "onSave".
            diagnosticPullOptions: {
                onChange: true,
                onSave: true,
                onTabs: true,
                match: (_selector, resource) => /\.pyi?$/.test(resource.path) && resource.scheme === "file",
            },
            initializationOptions: () => initializationOptions(this.currentServerSettings()),
            errorHandler: this.errorHandler(),
            initializationFailedHandler: (error) => {
                log.error(`server initialization failed: ${error instanceof Error ? error.message : String(error)}`);
                return false;
            },
            markdown: { isTrusted: false, supportHtml: false },
            middleware: {
                workspace: {
                    // Answer workspace/configuration for our section with the resolved settings.
                    configuration: async (params, token, next) => {
                        const result: unknown = await next(params, token);
                        if (!Array.isArray(result)) {
                            return result as ResponseError;
                        }
                        const values: unknown[] = result;
                        return params.items.map((item, i) =>
                            item.section === CONFIG_SECTION ? this.currentServerSettings() : values[i],
                        );
                    },
                },
            },
        };
        const client = new LanguageClient(SERVER_ID, SERVER_NAME, serverOptions, clientOptions);
        // The extension owns gradtrace.probe (trust check, progress, cancellation) and forwards it to the
        // server; keep the client from registering a second command of the same name.
        const executeCommand = client.getFeature(ExecuteCommandRequest.method);
        const register = executeCommand.register.bind(executeCommand);
        executeCommand.register = (data) =>
            register({
                ...data,
                registerOptions: {
                    ...data.registerOptions,
                    commands: data.registerOptions.commands.filter((c) => !CLIENT_OWNED_COMMANDS.has(c)),
                },
            });
        return client;
    }

    private currentServerSettings(): ServerSettings {
        if (!this.serverSettings) {
            throw new Error("server settings requested before the server was configured");
        }
        return this.serverSettings;
    }

    /** Settings changed that do not need a new process: tell the running server. */
    async settingsChanged(): Promise<void> {
        if (!this.serverSettings || !this.resolution) {
            return;
        }
        const { settings, problems } = getSettings();
        for (const p of problems) {
            log.warn(`setting gradtrace.${p.key}: ${p.message}; using the default`);
        }
        this.serverSettings = toServerSettings(settings, {
            interpreter: this.serverSettings.interpreter,
            importStrategy: this.resolution.strategy,
            workspaceTrusted: this.resolution.trusted,
        });
        const client = this.languageClient;
        if (client) {
            log.info("settings changed: sending them to the server");
            await client.sendNotification(
                DidChangeConfigurationNotification.type,
                didChangeConfigurationParams(this.serverSettings),
            );
        }
    }

    /** The server's commands (from its capabilities), including the ones the extension forwards. */
    serverCommands(): string[] {
        return this.languageClient?.initializeResult?.capabilities.executeCommandProvider?.commands ?? [];
    }

    private errorHandler(): ErrorHandler {
        return {
            error: (error: Error, _message: Message | undefined, count: number | undefined): ErrorHandlerResult => {
                log.error(`connection error: ${error.message}`);
                return { action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown, handled: true };
            },
            closed: (): CloseHandlerResult => {
                const now = Date.now();
                this.crashes = this.crashes.filter((t) => now - t < CRASH_WINDOW_MS);
                this.crashes.push(now);
                if (this.crashes.length <= MAX_CRASHES) {
                    log.warn(`the server stopped unexpectedly; restarting (${this.crashes.length}/${MAX_CRASHES})`);
                    return { action: CloseAction.Restart, handled: true };
                }
                const reason = `the server stopped ${this.crashes.length} times in ${CRASH_WINDOW_MS / 60_000} minutes; not restarting it again`;
                this.info = undefined;
                this.fail(`${reason}. Its error output is in the log.`);
                return { action: CloseAction.DoNotRestart, handled: true };
            },
        };
    }

    dispose(): void {
        void this.stop();
    }
}

let channelRef: vscode.LogOutputChannel | undefined;

/** The channel the client writes to; set once by activate(). */
export function setLogChannel(channel: vscode.LogOutputChannel): void {
    channelRef = channel;
}

function logChannelOf(): vscode.LogOutputChannel {
    if (!channelRef) {
        throw new Error("log channel not created");
    }
    return channelRef;
}
