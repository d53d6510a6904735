/**
 * The `gradtrace.*` settings as the extension reads them and as the server receives them
 * (pure logic, no VS Code API: unit-tested).
 */

export type ImportStrategy = "useBundled" | "fromEnvironment";
export type RunMode = "onType" | "onSave";
/** "cpu", "cuda", "cuda:N" or "mps". */
export type ProbeDevice = string;
export type LogLevel = "error" | "warning" | "info" | "debug";
export type TraceLevel = "off" | "messages" | "verbose";

export interface ExtensionSettings {
    interpreter: string[];
    importStrategy: ImportStrategy;
    lint: { enable: boolean; select: string[]; ignore: string[]; run: RunMode };
    fixAll: boolean;
    codeAction: { fixViolation: { enable: boolean }; disableRuleComment: { enable: boolean } };
    showSyntaxErrors: boolean;
    lens: { enable: boolean };
    inlayHints: { enable: boolean };
    probe: { enable: boolean; timeout: number; memory: number; device: ProbeDevice };
    logLevel: LogLevel;
    trace: { server: TraceLevel };
}

export const DEFAULT_SETTINGS: ExtensionSettings = {
    interpreter: [],
    importStrategy: "useBundled",
    lint: { enable: true, select: [], ignore: [], run: "onType" },
    fixAll: true,
    codeAction: { fixViolation: { enable: true }, disableRuleComment: { enable: true } },
    showSyntaxErrors: true,
    lens: { enable: true },
    inlayHints: { enable: false },
    probe: { enable: true, timeout: 60, memory: 4096, device: "cpu" },
    logLevel: "info",
    trace: { server: "off" },
};

/** Reads one dotted key (e.g. "lint.select") from the `gradtrace` section; undefined when unset or unknown. */
export type SettingReader = (key: string) => unknown;

/** A setting whose value had the wrong type or was out of range, and the default used instead. */
export interface SettingProblem {
    key: string;
    message: string;
}

function pick<T extends string>(value: unknown, allowed: readonly T[], fallback: T): T {
    return typeof value === "string" && (allowed as readonly string[]).includes(value) ? (value as T) : fallback;
}

const CODE = /^(ALL|GT\d{0,3})$/;
const DEVICE = /^(cpu|mps|cuda(:\d+)?)$/;

/**
 * Build typed settings from raw values. Wrong types fall back to the default and are reported, so the
 * caller can say which setting was ignored.
 */
export function readSettings(read: SettingReader): { settings: ExtensionSettings; problems: SettingProblem[] } {
    const problems: SettingProblem[] = [];
    const d = DEFAULT_SETTINGS;

    const bool = (key: string, fallback: boolean): boolean => {
        const v = read(key);
        if (v === undefined || v === null) {
            return fallback;
        }
        if (typeof v === "boolean") {
            return v;
        }
        problems.push({ key, message: `expected true or false, got ${JSON.stringify(v)}` });
        return fallback;
    };
    const num = (key: string, fallback: number, min: number, max: number): number => {
        const v = read(key);
        if (v === undefined || v === null) {
            return fallback;
        }
        if (typeof v === "number" && Number.isFinite(v) && v >= min && v <= max) {
            return v;
        }
        problems.push({ key, message: `expected a number from ${min} to ${max}, got ${JSON.stringify(v)}` });
        return fallback;
    };
    const choice = <T extends string>(key: string, allowed: readonly T[], fallback: T): T => {
        const v = read(key);
        if (v === undefined || v === null) {
            return fallback;
        }
        const out = pick(v, allowed, fallback);
        if (out !== v) {
            problems.push({ key, message: `expected one of ${allowed.join(", ")}, got ${JSON.stringify(v)}` });
        }
        return out;
    };
    const device = (key: string, fallback: string): string => {
        const v = read(key);
        if (v === undefined || v === null) {
            return fallback;
        }
        if (typeof v === "string" && DEVICE.test(v)) {
            return v;
        }
        problems.push({ key, message: `expected "cpu", "cuda", "cuda:N" or "mps", got ${JSON.stringify(v)}` });
        return fallback;
    };
    const strings = (key: string): string[] => {
        const v = read(key);
        if (v === undefined || v === null) {
            return [];
        }
        if (typeof v === "string") {
            return v.trim() ? [v.trim()] : [];
        }
        if (Array.isArray(v) && v.every((s) => typeof s === "string")) {
            return v.map((s) => s.trim()).filter((s) => s !== "");
        }
        problems.push({ key, message: `expected a list of strings, got ${JSON.stringify(v)}` });
        return [];
    };
    const codes = (key: string): string[] => {
        const out: string[] = [];
        for (const item of strings(key)) {
            const code = item.toUpperCase();
            if (CODE.test(code)) {
                out.push(code);
            } else {
                problems.push({ key, message: `${JSON.stringify(item)} is not a rule code or prefix (like GT101 or GT1)` });
            }
        }
        return out;
    };

    const settings: ExtensionSettings = {
        interpreter: strings("interpreter"),
        importStrategy: choice("importStrategy", ["useBundled", "fromEnvironment"] as const, d.importStrategy),
        lint: {
            enable: bool("lint.enable", d.lint.enable),
            select: codes("lint.select"),
            ignore: codes("lint.ignore"),
            run: choice("lint.run", ["onType", "onSave"] as const, d.lint.run),
        },
        fixAll: bool("fixAll", d.fixAll),
        codeAction: {
            fixViolation: { enable: bool("codeAction.fixViolation.enable", d.codeAction.fixViolation.enable) },
            disableRuleComment: {
                enable: bool("codeAction.disableRuleComment.enable", d.codeAction.disableRuleComment.enable),
            },
        },
        showSyntaxErrors: bool("showSyntaxErrors", d.showSyntaxErrors),
        lens: { enable: bool("lens.enable", d.lens.enable) },
        inlayHints: { enable: bool("inlayHints.enable", d.inlayHints.enable) },
        probe: {
            enable: bool("probe.enable", d.probe.enable),
            timeout: num("probe.timeout", d.probe.timeout, 1, 3600),
            memory: num("probe.memory", d.probe.memory, 256, 1024 * 1024),
            device: device("probe.device", d.probe.device),
        },
        logLevel: choice("logLevel", ["error", "warning", "info", "debug"] as const, d.logLevel),
        trace: { server: choice("trace.server", ["off", "messages", "verbose"] as const, d.trace.server) },
    };
    return { settings, problems };
}

/** What the server is told about the environment it runs in, beside the settings. */
export interface ServerContext {
    /** The interpreter that runs the server and the probe, as a command line. */
    interpreter: string[];
    /** The import strategy actually used (fromEnvironment is refused in an untrusted workspace). */
    importStrategy: ImportStrategy;
    workspaceTrusted: boolean;
}

/**
 * The object the server receives under the `gradtrace` section: the same keys as the VS Code settings,
 * with the values the extension resolved. The probe is disabled here when the workspace is untrusted,
 * so a server never sees it enabled there (the server refuses gradtrace.probe when it is disabled).
 */
export interface ServerSettings extends Omit<ExtensionSettings, "interpreter" | "importStrategy"> {
    /** The interpreter the probe runs in: the one running the server. */
    interpreter: string[];
    importStrategy: ImportStrategy;
}

export function toServerSettings(settings: ExtensionSettings, ctx: ServerContext): ServerSettings {
    const probeAllowed = settings.probe.enable && ctx.workspaceTrusted;
    return {
        interpreter: [...ctx.interpreter],
        importStrategy: ctx.importStrategy,
        lint: { ...settings.lint, select: [...settings.lint.select], ignore: [...settings.lint.ignore] },
        fixAll: settings.fixAll,
        codeAction: {
            fixViolation: { ...settings.codeAction.fixViolation },
            disableRuleComment: { ...settings.codeAction.disableRuleComment },
        },
        showSyntaxErrors: settings.showSyntaxErrors,
        lens: { ...settings.lens },
        inlayHints: { ...settings.inlayHints },
        probe: { ...settings.probe, enable: probeAllowed },
        logLevel: settings.logLevel,
        trace: { ...settings.trace },
    };
}

/** `initializationOptions` for the server: the settings under the `gradtrace` key. */
export function initializationOptions(server: ServerSettings): { gradtrace: ServerSettings } {
    return { gradtrace: server };
}

/** `workspace/didChangeConfiguration` params for the server. */
export function didChangeConfigurationParams(server: ServerSettings): { settings: { gradtrace: ServerSettings } } {
    return { settings: { gradtrace: server } };
}

/** The import strategy to use, and why a configured one was refused. */
export function effectiveImportStrategy(
    configured: ImportStrategy,
    trusted: boolean,
): { strategy: ImportStrategy; refused?: string } {
    if (configured === "fromEnvironment" && !trusted) {
        return {
            strategy: "useBundled",
            refused:
                "importStrategy \"fromEnvironment\" would run code from the selected environment, which an untrusted " +
                "workspace may control: gradtrace runs its bundled server instead. Trust the workspace to use it.",
        };
    }
    return { strategy: configured };
}
