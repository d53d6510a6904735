// Lint for the extension's TypeScript: eslint's and typescript-eslint's recommended rules, type-aware.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));

export default tseslint.config(
    { ignores: ["**/out/**", "**/bundled/**", "**/*.mjs"] },
    js.configs.recommended,
    ...tseslint.configs.recommendedTypeChecked,
    {
        files: ["**/*.ts"],
        languageOptions: {
            parserOptions: { project: `${root}/tsconfig.json`, tsconfigRootDir: root },
        },
        rules: {
            "@typescript-eslint/no-floating-promises": "error",
            "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
            "@typescript-eslint/require-await": "off",
            curly: "error",
            eqeqeq: "error",
            "no-console": ["error", { allow: ["log"] }],
        },
    },
    {
        // node:test's describe/it return promises that the runner itself awaits
        files: ["**/test/**/*.ts"],
        rules: { "@typescript-eslint/no-floating-promises": "off" },
    },
);
