/** gradtrace.revealCut: a click on the code lens above a loss opens the cut that keeps a module from training. */

import * as vscode from "vscode";
import { COMMAND_REVEAL_CUT } from "./constants";
import { log } from "./logging";
import { revealTarget } from "./revealTarget";

export function registerRevealCut(): vscode.Disposable {
    return vscode.commands.registerCommand(COMMAND_REVEAL_CUT, async (arg?: unknown) => {
        const target = revealTarget(arg);
        if (!target) {
            log.warn(`${COMMAND_REVEAL_CUT}: unexpected argument ${JSON.stringify(arg)}`);
            return;
        }
        const range = new vscode.Range(target.start.line, target.start.character, target.end.line, target.end.character);
        const editor = await vscode.window.showTextDocument(vscode.Uri.parse(target.uri), { selection: range });
        editor.revealRange(range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
    });
}
