/**
 * How the server process is started, and what to tell the user when it cannot be
 * (pure logic, no VS Code API: unit-tested).
 */

import type { ImportStrategy } from "./settingsModel";

/**
 * What `gradtrace_launcher.py` says about itself: on stderr, prefixed with REPORT_PREFIX, before the server
 * starts (or instead of it); on stdout with `--check`.
 */
export interface LauncherReport {
    python: string;
    executable: string;
    strategy: ImportStrategy;
    gradtrace: string | null;
    missing: { module: string; error: string }[];
    error: string | null;
    paths: string[];
    /** "shipped" (byte code in the .vsix for this Python), "compiled here", or null (not the bundle). */
    bytecode?: string | null;
}

export const REPORT_PREFIX = "gradtrace-launcher: ";

export interface LaunchPaths {
    /** `<extension>/extension/bundled/tool/gradtrace_launcher.py` */
    launcher: string;
    /** `<extension>/extension/bundled/libs` */
    libs: string;
}

/**
 * The command line that runs the launcher: the interpreter command, then `-I` for the bundled server
 * (isolated mode: no PYTHONPATH, no user site-packages, no script or current directory on sys.path,
 * so nothing in the workspace or the environment can shadow the bundled packages), then the launcher.
 */
export function launcherCommand(
    interpreter: readonly string[],
    strategy: ImportStrategy,
    paths: LaunchPaths,
    check: boolean,
): { command: string; args: string[] } {
    const [command, ...rest] = interpreter;
    const args = [...rest];
    if (strategy === "useBundled") {
        args.push("-I", paths.launcher, "--libs", paths.libs);
    } else {
        args.push(paths.launcher, "--from-environment");
    }
    if (check) {
        args.push("--check");
    }
    return { command, args };
}

/** The last JSON object line in `--check` output (interpreter wrappers may print before it). */
export function parseLauncherReport(stdout: string): LauncherReport | undefined {
    for (const line of stdout.split(/\r?\n/).reverse()) {
        const report = reportFromJson(line.trim());
        if (report) {
            return report;
        }
    }
    return undefined;
}

/** The report in one line of the server's error output, or undefined when the line is something else. */
export function parseReportLine(line: string): LauncherReport | undefined {
    const text = line.trim();
    return text.startsWith(REPORT_PREFIX) ? reportFromJson(text.slice(REPORT_PREFIX.length)) : undefined;
}

function reportFromJson(text: string): LauncherReport | undefined {
    if (!text.startsWith("{")) {
        return undefined;
    }
    try {
        const value = JSON.parse(text) as Partial<LauncherReport>;
        if (typeof value.python === "string" && Array.isArray(value.missing)) {
            return {
                python: value.python,
                executable: value.executable ?? "",
                strategy: value.strategy === "fromEnvironment" ? "fromEnvironment" : "useBundled",
                gradtrace: value.gradtrace ?? null,
                missing: value.missing,
                error: value.error ?? null,
                paths: value.paths ?? [],
                bytecode: value.bytecode ?? null,
            };
        }
    } catch {
        // not our line
    }
    return undefined;
}

export interface SpawnFailure {
    /** errno code from spawn, e.g. ENOENT, EACCES. */
    code?: string;
    exitCode?: number | null;
    stderr?: string;
}

/** Why the server cannot start, in one or two sentences that say what to do. Undefined: it can start. */
export function describeStartProblem(
    interpreter: readonly string[],
    report: LauncherReport | undefined,
    failure: SpawnFailure | undefined,
): string | undefined {
    const shown = interpreter.join(" ");
    const choose =
        "Set gradtrace.interpreter to a Python 3.10–3.13 interpreter, or select one in the Python extension.";
    if (failure?.code === "ENOENT") {
        return `The Python interpreter "${shown}" was not found. ${choose}`;
    }
    if (failure?.code === "EACCES") {
        return `The Python interpreter "${shown}" cannot be executed (permission denied). ${choose}`;
    }
    if (!report) {
        if (!failure) {
            return undefined;
        }
        const tail = lastLines(failure.stderr ?? "", 3);
        const code = failure.exitCode !== undefined && failure.exitCode !== null ? ` (exit code ${failure.exitCode})` : "";
        return `"${shown}" could not start gradtrace's language server${code}${tail ? `: ${tail}` : ""}. ${choose}`;
    }
    if (report.error) {
        const fix =
            report.strategy === "useBundled"
                ? choose
                : "Install gradtrace in that environment or set gradtrace.importStrategy to useBundled.";
        return `${capitalise(report.error)} (${report.executable || shown}). ${fix}`;
    }
    if (report.missing.length > 0) {
        const names = report.missing.map((m) => m.module);
        const root = names.includes("gradtrace") ? ["gradtrace"] : names;
        const detail = report.missing.find((m) => m.module === root[0])?.error ?? "";
        if (report.strategy === "fromEnvironment") {
            const what = root.includes("gradtrace")
                ? "gradtrace is not installed in"
                : `gradtrace's dependencies (${root.join(", ")}) cannot be imported from`;
            return (
                `${what} ${report.executable || shown} (Python ${report.python}), which gradtrace.importStrategy ` +
                `"fromEnvironment" asks for. Install it there (pip install gradtrace) or set gradtrace.importStrategy ` +
                `to "useBundled".`
            );
        }
        return (
            `The bundled server cannot import ${root.join(", ")} with Python ${report.python} ` +
            `(${detail}). The extension package may be incomplete: reinstall it.`
        );
    }
    return undefined;
}

function capitalise(text: string): string {
    return text.charAt(0).toUpperCase() + text.slice(1);
}

function lastLines(text: string, n: number): string {
    return text
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter((l) => l !== "")
        .slice(-n)
        .join(" ");
}
