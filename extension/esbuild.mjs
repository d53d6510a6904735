// Builds the extension (one CommonJS file, vscode external) and, with --tests, the unit tests.
//   node extension/esbuild.mjs [--production] [--watch] [--tests]
import * as esbuild from "esbuild";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = new Set(process.argv.slice(2));
const production = args.has("--production");

const common = {
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    external: ["vscode"],
    logLevel: "warning",
};

const builds = [];
if (args.has("--tests")) {
    const testDir = join(here, "src", "test");
    const entryPoints = readdirSync(testDir)
        .filter((f) => f.endsWith(".test.ts"))
        .map((f) => join(testDir, f));
    builds.push({ ...common, entryPoints, outdir: join(here, "out", "test"), sourcemap: "inline" });
} else {
    builds.push({
        ...common,
        entryPoints: [join(here, "src", "extension.ts")],
        outfile: join(here, "out", "extension.js"),
        minify: production,
        sourcemap: !production,
        sourcesContent: false,
    });
}

if (args.has("--watch")) {
    for (const options of builds) {
        const ctx = await esbuild.context(options);
        await ctx.watch();
    }
} else {
    await Promise.all(builds.map((options) => esbuild.build(options)));
}
