/**
 * What to tell the user after a probe run (pure logic, no VS Code API: unit-tested).
 *
 * The probe's JSON says what happened in the words of its implementation (`FrameworkMissing`, a CLI flag to
 * use); the editor says it in one short sentence that names the file and the setting to change, with buttons.
 */

/** The parts of the probe's JSON result read here (DESIGN §3). */
export interface ProbeResult {
    status?: string;
    framework?: string | null;
    error?: { type?: string; message?: string; path?: string | null; line?: number | null } | null;
    findings?: unknown[];
}

export interface ProbeOutcome {
    /** One sentence for the notification. */
    message: string;
    /** The setting "Open settings" shows. */
    setting: string;
}

const FRAMEWORK_NAMES: Record<string, string> = { torch: "PyTorch", tensorflow: "TensorFlow", jax: "JAX" };

/** Undefined when the probe ran (its findings and the server's summary say the rest). */
export function probeOutcome(result: ProbeResult | null | undefined, file: string): ProbeOutcome | undefined {
    const status = result?.status;
    if (status === "ok") {
        return undefined;
    }
    const err = result?.error ?? {};
    const framework = FRAMEWORK_NAMES[result?.framework ?? ""] ?? "the framework";
    switch (err.type) {
        case "FrameworkMissing":
            return {
                message: `gradtrace: cannot probe ${file}: the selected Python has no ${framework}. Choose your project's interpreter.`,
                setting: "gradtrace.interpreter",
            };
        case "InterpreterError":
        case "WorkerDied":
            return {
                message: `gradtrace: cannot probe ${file}: the selected Python could not start the probe.`,
                setting: "gradtrace.interpreter",
            };
        case "Cancelled":
            return undefined;
    }
    if (status === "timeout") {
        return { message: `gradtrace: probing ${file} ran out of time.`, setting: "gradtrace.probe.timeout" };
    }
    if (status === "unsupported") {
        const what = result?.framework ? `${framework} code` : "this file";
        return { message: `gradtrace: the probe does not run ${what} yet (PyTorch and TensorFlow only).`, setting: "gradtrace.probe" };
    }
    if (err.line && result?.findings?.length) {
        return undefined; // the user's code raised: a finding at its line says so
    }
    return { message: `gradtrace: the probe of ${file} failed.`, setting: "gradtrace.probe" };
}
