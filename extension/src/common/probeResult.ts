/**
 * One sentence about a probe result (the JSON of DESIGN §3, as the server's gradtrace.probe returns it)
 * for the notification shown when the probe finishes (pure logic: unit-tested).
 */

export interface ProbeSummary {
    level: "info" | "warning" | "error";
    text: string;
}

interface ProbeParameter {
    name?: string;
    grad?: string;
}

const LISTED = 4;

function names(params: ProbeParameter[]): string {
    const shown = params.slice(0, LISTED).map((p) => p.name ?? "?");
    const more = params.length - shown.length;
    return shown.join(", ") + (more > 0 ? ` and ${more} more` : "");
}

export function summariseProbeResult(result: unknown): ProbeSummary {
    if (result === null || typeof result !== "object") {
        return { level: "info", text: "finished; see the Problems panel for its findings." };
    }
    const r = result as {
        status?: string;
        parameters?: ProbeParameter[];
        findings?: unknown[];
        error?: { type?: string; message?: string; line?: number } | null;
        isolation?: string[];
    };
    const status = r.status ?? "ok";
    if (status === "timeout") {
        return { level: "error", text: "the run hit the time limit (gradtrace.probe.timeout) and was stopped." };
    }
    if (status === "error" || status === "unsupported") {
        const e = r.error;
        const where = e?.line ? ` (line ${e.line})` : "";
        const what = e?.message ? `${e.type ? `${e.type}: ` : ""}${e.message}${where}` : status;
        return { level: status === "error" ? "error" : "warning", text: `could not probe this file: ${what}` };
    }
    const params = Array.isArray(r.parameters) ? r.parameters : [];
    const dead = params.filter((p) => p.grad === "none" || p.grad === "zero");
    const nonfinite = params.filter((p) => p.grad === "nonfinite");
    const parts: string[] = [];
    if (dead.length > 0) {
        parts.push(`${dead.length} of ${params.length} parameters get no gradient (${names(dead)})`);
    }
    if (nonfinite.length > 0) {
        parts.push(`${nonfinite.length} get a non-finite gradient (${names(nonfinite)})`);
    }
    if (parts.length > 0) {
        return { level: "warning", text: `${parts.join("; ")}. Details in the Problems panel and on hover.` };
    }
    if (params.length > 0) {
        return { level: "info", text: `all ${params.length} parameters get a gradient.` };
    }
    const findings = Array.isArray(r.findings) ? r.findings.length : 0;
    return {
        level: findings > 0 ? "warning" : "info",
        text: findings > 0 ? `${findings} findings; see the Problems panel.` : "no parameters found to check.",
    };
}
