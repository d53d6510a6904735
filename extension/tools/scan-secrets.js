// Scans the files gradtrace itself ships in the .vsix for secrets with vsce's own scanner.
// (vsce's built-in scan would also read the ~7,000 third-party Python files of the bundle, which
// takes minutes; those come unchanged from the package index.)   node extension/tools/scan-secrets.js FILE...
const { lintFiles, prettyPrintLintResult } = require("@vscode/vsce/out/secretLint");

(async () => {
    const files = process.argv.slice(2);
    const result = await lintFiles(files, true, true);
    if (!result.ok) {
        console.error("scan-secrets: secrets found:\n" + result.results.map(prettyPrintLintResult).join("\n"));
        process.exit(1);
    }
    console.log(`scan-secrets: ${files.length} files, no secrets`);
})().catch((err) => {
    console.error(`scan-secrets: ${err}`);
    process.exit(2);
});
