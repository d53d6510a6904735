/**
 * gradtrace.showRuleDocs: a rule's documentation page, rendered in VS Code's Markdown preview.
 *
 * The server links every rule code to the page shipped with the package (a `file:` URI, so that any editor can
 * open it offline). Here those links, in diagnostics and hovers, become this command, which opens the page
 * rendered rather than as Markdown source. Pages come from the server (`gradtrace.showRuleDocs` answers the URL
 * and the Markdown), else from the pages bundled with the extension.
 */

import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import { ExecuteCommandRequest } from "vscode-languageclient/node";
import { COMMAND_SHOW_RULE_DOCS } from "./constants";
import { log } from "./logging";
import type { ServerManager } from "./server";

const PAGE = /\/docs\/rules\/(GT\d{3})\.md$/;
const PAGE_LINK = /\]\((file:[^)\s]*\/docs\/rules\/(GT\d{3})\.md)\)/g;
const SCHEME = "gradtrace-rule-docs";

interface RuleEntry {
    code: string;
    name?: string;
    summary?: string;
    severity?: string;
}

/** `command:gradtrace.showRuleDocs?["GT105"]` */
export function docsCommandUri(code: string): vscode.Uri {
    return vscode.Uri.parse(`command:${COMMAND_SHOW_RULE_DOCS}?${encodeURIComponent(JSON.stringify([code]))}`);
}

/** Point rule-code links at the command (in place). */
export function linkDiagnosticsToDocs(diagnostics: vscode.Diagnostic[]): void {
    for (const d of diagnostics) {
        const code = d.code;
        if (code && typeof code === "object" && code.target.scheme === "file") {
            const match = PAGE.exec(code.target.path);
            if (match) {
                d.code = { value: code.value, target: docsCommandUri(match[1]) };
            }
        }
    }
}

/** Point the hover's documentation links at the command (in place). */
export function linkHoverToDocs(hover: vscode.Hover): vscode.Hover {
    for (const part of hover.contents) {
        if (part instanceof vscode.MarkdownString) {
            part.value = part.value.replace(PAGE_LINK, (_whole, _url: string, code: string) => `](${docsCommandUri(code).toString()})`);
        }
    }
    return hover;
}

function codeOf(arg: unknown): string | undefined {
    const value = typeof arg === "object" && arg !== null ? (arg as { code?: unknown }).code : arg;
    return typeof value === "string" && /^gt\d{3}$/i.test(value) ? value.toUpperCase() : undefined;
}

/** The gradtrace code of a diagnostic under the cursor, to offer first. */
function codeAtCursor(): string | undefined {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
        return undefined;
    }
    const here = editor.selection.active;
    const hit = vscode.languages
        .getDiagnostics(editor.document.uri)
        .find((d) => d.source?.startsWith("gradtrace") && d.range.contains(here));
    const value = typeof hit?.code === "object" ? hit.code.value : hit?.code;
    return value !== undefined ? String(value) : undefined;
}

export class RuleDocs implements vscode.Disposable {
    private readonly pages = new Map<string, string>();
    private readonly disposables: vscode.Disposable[];

    constructor(
        private readonly manager: ServerManager,
        private readonly bundledPages: string,
    ) {
        this.disposables = [
            vscode.workspace.registerTextDocumentContentProvider(SCHEME, {
                provideTextDocumentContent: (uri) => this.pages.get(uri.path) ?? "",
            }),
            vscode.commands.registerCommand(COMMAND_SHOW_RULE_DOCS, (arg?: unknown) => this.show(codeOf(arg))),
        ];
    }

    private async serverAnswer(args: unknown[]): Promise<unknown> {
        const client = this.manager.languageClient;
        if (!client || !this.manager.serverCommands().includes(COMMAND_SHOW_RULE_DOCS)) {
            return undefined;
        }
        try {
            return await client.sendRequest(ExecuteCommandRequest.type, { command: COMMAND_SHOW_RULE_DOCS, arguments: args });
        } catch (err) {
            log.warn(`${COMMAND_SHOW_RULE_DOCS}: the server did not answer (${err instanceof Error ? err.message : String(err)})`);
            return undefined;
        }
    }

    private async rules(): Promise<RuleEntry[]> {
        const answer = (await this.serverAnswer([])) as { rules?: RuleEntry[] } | undefined;
        if (answer?.rules?.length) {
            return answer.rules;
        }
        const files = fs.existsSync(this.bundledPages) ? fs.readdirSync(this.bundledPages) : [];
        return files.filter((f) => /^GT\d{3}\.md$/.test(f)).map((f) => ({ code: f.slice(0, -3) }));
    }

    private async pick(): Promise<string | undefined> {
        const preferred = codeAtCursor();
        const items = (await this.rules()).map((r) => ({
            label: r.code,
            description: r.name,
            detail: r.summary,
            picked: r.code === preferred,
        }));
        items.sort((a, b) => Number(b.picked) - Number(a.picked) || a.label.localeCompare(b.label));
        const chosen = await vscode.window.showQuickPick(items, {
            title: "gradtrace: rule documentation",
            placeHolder: "A rule code or words from its summary",
            matchOnDescription: true,
            matchOnDetail: true,
        });
        return chosen?.label;
    }

    /** The page to preview: the server's file, the bundled file, or the server's Markdown as a virtual page. */
    private async page(code: string): Promise<vscode.Uri | undefined> {
        const answer = (await this.serverAnswer([code])) as { url?: string; markdown?: string } | undefined;
        if (answer?.url?.startsWith("file:")) {
            const uri = vscode.Uri.parse(answer.url);
            if (fs.existsSync(uri.fsPath)) {
                return uri;
            }
        }
        const bundled = path.join(this.bundledPages, `${code}.md`);
        if (fs.existsSync(bundled)) {
            return vscode.Uri.file(bundled);
        }
        if (answer?.markdown) {
            this.pages.set(`/${code}.md`, answer.markdown);
            return vscode.Uri.from({ scheme: SCHEME, path: `/${code}.md` });
        }
        return undefined;
    }

    async show(code: string | undefined): Promise<void> {
        const wanted = code ?? (await this.pick());
        if (!wanted) {
            return;
        }
        const uri = await this.page(wanted);
        if (!uri) {
            void vscode.window.showWarningMessage(`gradtrace: no documentation for ${wanted}.`);
            return;
        }
        log.info(`rule documentation ${wanted}: ${uri.toString()}`);
        await vscode.commands.executeCommand("markdown.showPreview", uri);
    }

    dispose(): void {
        for (const d of this.disposables.splice(0)) {
            d.dispose();
        }
    }
}
