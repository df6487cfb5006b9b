/**
 * Where the two ways a user runs pulumi (scripts/up.sh, and `pulumi up` in
 * the dev shell of nix/shell.nix) put Node's compile cache: NODE_COMPILE_CACHE
 * reaches every Node.js process of the run, the dynamic provider plugin too,
 * which the program's own cache (components/compileCache.ts) cannot. Both
 * follow the project's cache rule (components/cacheDir.ts) and keep a value
 * the user set.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import { projectCacheDir } from "../../components/cacheDir";
import { nixEvalJson, nixTools, run, tempDir } from "../helpers/nix";
import { requireTools } from "../helpers/tools";

const repoRoot = path.resolve(__dirname, "..", "..");

/** projectCacheDir takes the home directory from os.homedir(): the scripts get the same as HOME. */
const home = os.homedir();

/** The environments each case runs with, and what the cache directory must then be. */
const cases: Array<{ name: string; env: Record<string, string>; expected: (env: Record<string, string>) => string }> = [
    { name: "defaults", env: { HOME: home }, expected: (e) => path.join(projectCacheDir(e), "node-compile-cache") },
    { name: "XDG_CACHE_HOME", env: { HOME: home, XDG_CACHE_HOME: "/xdg" }, expected: (e) => path.join(projectCacheDir(e), "node-compile-cache") },
    { name: "PCP_EVAL_CACHE_DIR", env: { HOME: home, PCP_EVAL_CACHE_DIR: "/cold/cache" }, expected: (e) => path.join(projectCacheDir(e), "node-compile-cache") },
    { name: "the user's own", env: { HOME: home, NODE_COMPILE_CACHE: "/mine" }, expected: () => "/mine" },
];

describe("NODE_COMPILE_CACHE for a pulumi run", () => {
    test("the dev shell's hook exports it under the project's cache root", async (t) => {
        if (!requireTools(t, [...nixTools, "bash"])) return;
        // nix/shell.nix with a stand-in pkgs: mkShell gives back its shellHook, every package is its name.
        const shellNix = path.join(repoRoot, "nix", "shell.nix");
        const names = /with pkgs; \[([^\]]*)\]/.exec(fs.readFileSync(shellNix, "utf8"))?.[1]?.trim().split(/\s+/) ?? [];
        assert.ok(names.length > 0, "the package list of nix/shell.nix");
        const hook = await nixEvalJson<string>({
            expr: `import ${shellNix} { pkgs = builtins.listToAttrs (map (n: { name = n; value = n; }) ${JSON.stringify(names).replace(/,/g, " ")}) // { mkShell = a: a.shellHook; }; }`,
        });
        for (const c of cases) {
            const r = await run("bash", ["-c", `${hook}\nprintf '%s' "$NODE_COMPILE_CACHE"`], { PATH: process.env.PATH ?? "/usr/bin:/bin", ...c.env });
            assert.equal(r.code, 0, r.stderr);
            assert.equal(r.stdout, c.expected(c.env), c.name);
        }
    });

    test("scripts/up.sh exports it to pulumi", async (t) => {
        if (!requireTools(t, ["bash"])) return;
        // A checkout of up.sh alone, with stand-ins for the tools it runs: pulumi prints what it got.
        const dir = tempDir("pe17-up-");
        try {
            fs.mkdirSync(path.join(dir, "scripts"));
            fs.copyFileSync(path.join(repoRoot, "scripts", "up.sh"), path.join(dir, "scripts", "up.sh"));
            fs.mkdirSync(path.join(dir, "node_modules"));
            fs.writeFileSync(path.join(dir, "package-lock.json"), "{}");
            fs.writeFileSync(path.join(dir, "node_modules", ".package-lock.json"), "{}");
            const bin = path.join(dir, "bin");
            fs.mkdirSync(bin);
            for (const tool of ["node", "npm", "nix"]) fs.writeFileSync(path.join(bin, tool), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
            fs.writeFileSync(path.join(bin, "pulumi"), '#!/bin/sh\n[ "$1" = up ] && printf "%s" "$NODE_COMPILE_CACHE"\nexit 0\n', { mode: 0o755 });
            for (const c of cases) {
                const env = { PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`, PULUMI_CONFIG_PASSPHRASE: "x", ...c.env };
                const r = await run("bash", [path.join(dir, "scripts", "up.sh"), "dev"], env);
                assert.equal(r.code, 0, r.stderr);
                assert.equal(r.stdout, c.expected(c.env), c.name);
            }
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
