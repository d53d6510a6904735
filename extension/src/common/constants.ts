/** Names shared by the extension's modules. */

export const EXTENSION_ID = "gradtrace.gradtrace";
export const SERVER_ID = "gradtrace";
export const SERVER_NAME = "gradtrace";
export const CONFIG_SECTION = "gradtrace";

export const COMMAND_PROBE = "gradtrace.probe";
export const COMMAND_RESTART = "gradtrace.restart";
export const COMMAND_SHOW_LOGS = "gradtrace.showLogs";
export const COMMAND_SHOW_RULE_DOCS = "gradtrace.showRuleDocs";
export const COMMAND_FIX_ALL = "gradtrace.fixAll";
export const COMMAND_DEBUG_INFO = "gradtrace.printDebugInformation";

/** Commands the extension registers itself; the server's commands of the same name go through these. */
export const CLIENT_OWNED_COMMANDS: ReadonlySet<string> = new Set([COMMAND_PROBE, COMMAND_SHOW_RULE_DOCS]);

/** Settings whose change needs a new server process rather than a didChangeConfiguration. */
export const RESTART_SETTINGS: readonly string[] = ["gradtrace.interpreter", "gradtrace.importStrategy"];

/** Python versions the bundled server supports (libcst is compiled per version). */
export const MIN_PYTHON: readonly [number, number] = [3, 10];

/** Wait after a burst of changes before restarting. */
export const RESTART_DELAY_MS = 500;
