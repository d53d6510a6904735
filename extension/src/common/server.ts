/**
 * Server lifecycle: choose the interpreter, start, restart and stop the language client.
 *
 * The server process is started at once (no separate check first: that cost a whole interpreter start and
 * the server's imports before the first squiggle). The launcher's first line of error output says which
 * Python runs it and what it could not import; when it cannot start, that line and its exit status explain why.
 */

import { ChildProcess, spawn } from "node:child_process";
import * as readline from "node:readline";
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
    MessageType,
    ResponseError,
    RevealOutputChannelOn,
    ShowMessageNotification,
    ShowMessageParams,
    ServerOptions,
    State,
} from "vscode-languageclient/node";
import {
    CLIENT_OWNED_COMMANDS,
    COMMAND_SHOW_LOGS,
    COMMAND_SHOW_RULE_DOCS,
    CONFIG_SECTION,
    SERVER_ID,
    SERVER_NAME,
} from "./constants";
import { InterpreterChoice, chooseInterpreter, describeSource } from "./interpreter";
import {
    LaunchPaths,
    LauncherReport,
    SpawnFailure,
    describeStartProblem,
    launcherCommand,
    parseReportLine,
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
import { linkDiagnosticsToDocs, linkHoverToDocs } from "./ruleDocs";
import * as status from "./status";

const MAX_CRASHES = 3;
const CRASH_WINDOW_MS = 3 * 60_000;

/** What the running server is made of; shown in the status item and the log. */
export interface ServerInfo {
    interpreter: InterpreterChoice;
    strategy: ImportStrategy;
    report: LauncherReport | undefined;
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

/** One server process as the extension started it: what its launcher reported, and how it ended. */
class ServerProcess {
    report: LauncherReport | undefined;
    failure: SpawnFailure | undefined;
    private readonly errorTail: string[] = [];
    readonly spawnedAt = Date.now();

    constructor(
        readonly child: ChildProcess,
        private readonly onReport: (report: LauncherReport) => void,
    ) {
        child.on("error", (err: NodeJS.ErrnoException) => {
            this.failure = { ...this.failure, code: err.code, stderr: err.message };
        });
        child.on("exit", (exitCode) => {
            this.failure = { ...this.failure, exitCode, stderr: this.errorTail.join("\n") };
        });
    }

    /** The server's error output, line by line: the launcher's report is kept, the rest goes to the log. */
    readErrors(input: NodeJS.ReadableStream, channel: vscode.LogOutputChannel): void {
        readline.createInterface({ input, crlfDelay: Infinity, terminal: false }).on("line", (line: string) => {
            const report = parseReportLine(line);
            if (report) {
                this.report = report;
                this.onReport(report);
                return;
            }
            this.errorTail.push(line);
            this.errorTail.splice(0, Math.max(0, this.errorTail.length - 20));
            channel.error(line);
        });
    }

    /** Resolves once the process runs, rejects with the spawn error (ENOENT, EACCES). */
    started(): Promise<void> {
        return new Promise((resolve, reject) => {
            if (this.child.pid !== undefined) {
                resolve();
                return;
            }
            this.child.once("spawn", () => resolve());
            this.child.once("error", reject);
        });
    }
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
    private process: ServerProcess | undefined;
    private starting = false;
    private firstDiagnosticsLogged = false;

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

    /** The settings last sent to the server. */
    get sentSettings(): ServerSettings | undefined {
        return this.serverSettings;
    }

    /** Where the launcher and the bundled packages are. */
    get launchPaths(): LaunchPaths {
        return this.paths;
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
        this.serverSettings = toServerSettings(settings, {
            interpreter: choice.command,
            importStrategy: resolution.strategy,
            workspaceTrusted: resolution.trusted,
        });
        const client = this.createClient(choice.command, resolution.strategy, cwd);
        this.client = client;
        this.starting = true;
        this.firstDiagnosticsLogged = false;
        try {
            await client.start();
        } catch (err) {
            this.client = undefined;
            await client.dispose().catch(() => undefined);
            const proc = this.process;
            const problem = describeStartProblem(choice.command, proc?.report, proc?.failure);
            this.fail(problem ?? `the language server did not start: ${err instanceof Error ? err.message : String(err)}`);
            return;
        } finally {
            this.starting = false;
        }
        const proc = this.process;
        const elapsed = proc ? ((Date.now() - proc.spawnedAt) / 1000).toFixed(2) : "?";
        const serverVersion = client.initializeResult?.serverInfo?.version ?? proc?.report?.gradtrace ?? "?";
        this.info = { interpreter: choice, strategy: resolution.strategy, report: proc?.report, version: serverVersion };
        this.showRunning();
        log.info(`server ${serverVersion} running (initialize answered ${elapsed} s after the process started)`);
        // The probe runs in the interpreter the launcher reported (a resolved path, not "python3" or a wrapper).
        const executable = proc?.report?.executable;
        if (executable && this.serverSettings && this.serverSettings.interpreter.join("\0") !== executable) {
            this.serverSettings = { ...this.serverSettings, interpreter: [executable] };
            await client.sendNotification(
                DidChangeConfigurationNotification.type,
                didChangeConfigurationParams(this.serverSettings),
            );
        }
        // A setting changed while the server was starting reached no server: send what is current now.
        await this.settingsChanged(true);
    }

    /** The status item and the log, from what the launcher reported. */
    private showRunning(): void {
        const info = this.info;
        if (!info) {
            return;
        }
        const report = info.report;
        const where = info.strategy === "useBundled" ? "bundled server" : "server from the environment";
        const python = report ? `Python ${report.python} (${report.executable}) · ` : "";
        status.setRunning(info.version, `${python}${where}`);
    }

    private onLauncherReport(report: LauncherReport): void {
        const bundle = report.strategy === "useBundled" ? `bundled: ${report.paths.join(", ")}; byte code ${report.bytecode ?? "?"}` : "from the environment";
        log.info(`Python ${report.python} at ${report.executable}; gradtrace ${report.gradtrace ?? "?"} (${bundle})`);
        if (this.info) {
            this.info.report = report;
            this.showRunning();
        }
    }

    /** Spawns the launcher; the client talks to it over stdio. */
    private spawnServer(interpreter: string[], strategy: ImportStrategy, cwd: string): Promise<ChildProcess> {
        const { command, args } = launcherCommand(interpreter, strategy, this.paths, false);
        log.debug(`server command: ${[command, ...args].join(" ")}`);
        const child = spawn(command, args, {
            cwd,
            env: { ...process.env, PYTHONUNBUFFERED: "1" },
            stdio: ["pipe", "pipe", "pipe"],
        });
        const proc = new ServerProcess(child, (report) => this.onLauncherReport(report));
        this.process = proc;
        return proc.started().then(() => child);
    }

    /** Logs the time from the process start to the first diagnostics it delivered (cold start). */
    private noteDiagnostics(count: number): void {
        if (this.firstDiagnosticsLogged || !this.process) {
            return;
        }
        this.firstDiagnosticsLogged = true;
        const seconds = ((Date.now() - this.process.spawnedAt) / 1000).toFixed(2);
        log.info(`first diagnostics (${count}) ${seconds} s after the server process started`);
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
        const serverOptions: ServerOptions = () => this.spawnServer(interpreter, strategy, cwd);
        const clientOptions: LanguageClientOptions = {
            documentSelector: [
                { scheme: "file", language: "python" },
                { scheme: "untitled", language: "python" },
                { notebook: { notebookType: "jupyter-notebook" }, language: "python" },
            ],
            outputChannel: logChannelOf(),
            traceOutputChannel: logChannelOf(),
            stdioOptions: {
                stdout: () => undefined, // the LSP stream: read by the client itself
                stderr: (input, channel) => this.process?.readErrors(input, channel),
            },
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
            // Hovers may link to the rule documentation command, and to nothing else that runs.
            markdown: { isTrusted: { enabledCommands: [COMMAND_SHOW_RULE_DOCS] }, supportHtml: false },
            middleware: {
                // Rule codes link to their documentation page (a file: URI, so that every editor can open it);
                // in VS Code the link opens the rendered page instead of the Markdown source.
                provideDiagnostics: async (document, previousResultId, token, next) => {
                    const report = await next(document, previousResultId, token);
                    if (report && "items" in report) {
                        linkDiagnosticsToDocs(report.items);
                        this.noteDiagnostics(report.items.length);
                    }
                    return report;
                },
                handleDiagnostics: (uri, diagnostics, next) => {
                    linkDiagnosticsToDocs(diagnostics);
                    this.noteDiagnostics(diagnostics.length);
                    next(uri, diagnostics);
                },
                provideHover: async (document, position, token, next) => {
                    const hover = await next(document, position, token);
                    return hover ? linkHoverToDocs(hover) : hover;
                },
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
        client.onNotification(ShowMessageNotification.type, (params) => showServerMessage(params));
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

    /** Settings changed that do not need a new process: tell the running server. Sends the current settings to the running server; with `onlyIfChanged`, only when they differ from the last sent. */
    async settingsChanged(onlyIfChanged = false): Promise<void> {
        if (!this.serverSettings || !this.resolution) {
            return;
        }
        const { settings, problems } = getSettings();
        if (!onlyIfChanged) {
            for (const p of problems) {
                log.warn(`setting gradtrace.${p.key}: ${p.message}; using the default`);
            }
        }
        const current = toServerSettings(settings, {
            interpreter: this.serverSettings.interpreter,
            importStrategy: this.resolution.strategy,
            workspaceTrusted: this.resolution.trusted,
        });
        const client = this.languageClient;
        if (!client || (onlyIfChanged && JSON.stringify(current) === JSON.stringify(this.serverSettings))) {
            return; // a server that is starting gets them when it is up (see doRestart)
        }
        this.serverSettings = current;
        log.info("settings changed: sending them to the server");
        await client.sendNotification(DidChangeConfigurationNotification.type, didChangeConfigurationParams(current));
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
                if (this.starting) {
                    // it never came up: the start path says why (launcher report, exit status); no restart loop
                    return { action: CloseAction.DoNotRestart, handled: true };
                }
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

/**
 * window/showMessage from the server. A failed probe run is told by the probe command itself, in one short
 * sentence with buttons; the server's longer account of it goes to the log.
 */
function showServerMessage(params: ShowMessageParams): void {
    const text = params.message;
    if (text.startsWith("gradtrace probe:") && (params.type === MessageType.Error || params.type === MessageType.Warning)) {
        log.warn(text);
        return;
    }
    if (params.type === MessageType.Error) {
        void vscode.window.showErrorMessage(text);
    } else if (params.type === MessageType.Warning) {
        void vscode.window.showWarningMessage(text);
    } else {
        void vscode.window.showInformationMessage(text);
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
