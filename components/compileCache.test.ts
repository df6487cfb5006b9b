import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";

// In a child process of its own: the cache is per process and, once on, stays on.
function runWithCache(cacheRoot: string, code: string): string {
    return execFileSync(process.execPath, ["--import", "tsx", "-e", code], {
        cwd: path.resolve(__dirname, ".."),
        env: { ...process.env, PCP_EVAL_CACHE_DIR: cacheRoot, NODE_COMPILE_CACHE: "" },
        encoding: "utf8",
    });
}

describe("the program's compile cache (components/compileCache.ts)", () => {
    it("is kept under the project's cache root, and modules loaded after it land there", () => {
        const root = fs.mkdtempSync(path.join(os.tmpdir(), "pe-ncc-"));
        try {
            const dir = runWithCache(root, `const { enableProgramCompileCache } = require("./components/compileCache"); require("yaml"); process.stdout.write(String(enableProgramCompileCache()));`);
            // Node keeps one subdirectory per Node version and writes it when the process exits.
            assert.equal(path.dirname(dir), path.join(root, "node-compile-cache"));
            assert.ok(fs.readdirSync(dir).length > 0, "no compiled module was written to the cache");
        } finally {
            fs.rmSync(root, { recursive: true, force: true });
        }
    });

    it("an unusable directory costs only the speed-up: the program still loads", () => {
        const root = fs.mkdtempSync(path.join(os.tmpdir(), "pe-ncc-"));
        try {
            const file = path.join(root, "not-a-dir");
            fs.writeFileSync(file, "");
            const out = runWithCache(file, `const { enableProgramCompileCache } = require("./components/compileCache"); process.stdout.write(JSON.stringify({ dir: enableProgramCompileCache() ?? null, yaml: typeof require("yaml").parse }));`);
            assert.deepEqual(JSON.parse(out), { dir: null, yaml: "function" });
        } finally {
            fs.rmSync(root, { recursive: true, force: true });
        }
    });
});
