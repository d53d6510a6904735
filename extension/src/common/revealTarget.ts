/** The argument of `gradtrace.revealCut` (pure logic, no VS Code API: unit-tested). */

export interface LspPosition {
    line: number;
    character: number;
}

/** Where to go: a document and the range to select there, in the server's (UTF-16) positions. */
export interface RevealTarget {
    uri: string;
    start: LspPosition;
    end: LspPosition;
}

function position(value: unknown): LspPosition | undefined {
    if (typeof value !== "object" || value === null) {
        return undefined;
    }
    const { line, character } = value as Record<string, unknown>;
    return Number.isInteger(line) && Number.isInteger(character) && (line as number) >= 0 && (character as number) >= 0
        ? { line: line as number, character: character as number }
        : undefined;
}

/** `{uri, selection: {start, end}}` as the server puts it in the code lens's command; undefined when malformed. */
export function revealTarget(arg: unknown): RevealTarget | undefined {
    if (typeof arg !== "object" || arg === null) {
        return undefined;
    }
    const { uri, selection } = arg as Record<string, unknown>;
    if (typeof uri !== "string" || !uri || typeof selection !== "object" || selection === null) {
        return undefined;
    }
    const start = position((selection as Record<string, unknown>).start);
    const end = position((selection as Record<string, unknown>).end);
    return start && end ? { uri, start, end } : undefined;
}
