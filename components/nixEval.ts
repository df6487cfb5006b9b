/**
 * What Nix would build, known before building: the output store path of each
 * NixBuild (the OCI image, every VM runner), from one evaluation of the flake.
 *
 * The rebuild decision follows this path. An edit Nix sees (any file a
 * derivation reads, whatever its extension, inside the flake or read through
 * an impure path) gives a new store path: that NixBuild rebuilds and the
 * container or VMs using it are replaced, and the plan shows the old and the
 * new path. An edit Nix ignores (a README, a comment Nix never reads into a
 * derivation) gives the same path: nothing changes. bench/fingerprint.ts
 * measures this against hashing the flake's files (see the figures there).
 *
 * The evaluation is read-only (`--read-only`: no .drv is written) and
 * `--impure`, like the runner builds, so `builtins.getFlake` accepts an
 * unlocked path and the same environment the build sees. Nix still copies the
 * flake's source into its store to evaluate it (content-addressed, what the
 * build does first anyway). All paths come from one nix process, so a flake's
 * inputs (nixpkgs) are evaluated once for the image and every runner.
 */
import { execFile } from "node:child_process";
import { constants } from "./constants";

/** Named Nix expressions, each evaluating to a derivation. */
export type NixExpressions = Record<string, string>;
/** The output store path of each named expression. */
export type StorePaths = Record<string, string>;
export type StorePathEvaluator = (expressions: NixExpressions) => Promise<StorePaths>;

/** A Nix string literal (no `${` interpolation). */
export function nixString(s: string): string {
    return JSON.stringify(s).replace(/\$\{/g, "\\${");
}

/** A flake reference Nix accepts for an absolute path (path:, so every file of the directory is the flake's source) or a reference. */
export function flakeRef(flake: string): string {
    return flake.startsWith("/") ? `path:${flake}` : flake;
}

/** An expression for `<flake>#<attrPath>`, e.g. packages.x86_64-linux.pcp-container. */
export function flakeOutputExpression(flake: string, attrPath: string): string {
    const attrs = attrPath.split(".").map((a) => (/^[A-Za-z_][A-Za-z0-9_'-]*$/.test(a) ? a : nixString(a)));
    return `(builtins.getFlake ${nixString(flakeRef(flake))}).${attrs.join(".")}`;
}

/** One attribute set naming each expression's output path: `{ "name" = (expr).outPath; ... }`. */
export function storePathsExpression(expressions: NixExpressions): string {
    const names = Object.keys(expressions).sort();
    if (names.length === 0) throw new Error("storePathsExpression: no expressions to evaluate");
    return `{ ${names.map((n) => `${nixString(n)} = (${expressions[n]}).outPath;`).join(" ")} }`;
}

/** Reads `nix eval --json` output: every name has an absolute store path. */
export function parseStorePaths(stdout: string, names: readonly string[]): StorePaths {
    let parsed: unknown;
    try {
        parsed = JSON.parse(stdout);
    } catch {
        throw new Error(`nix eval: expected a JSON object of store paths, got: ${stdout.slice(0, 400)}`);
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
        throw new Error(`nix eval: expected a JSON object of store paths, got: ${stdout.slice(0, 400)}`);
    }
    const paths = parsed as Record<string, unknown>;
    const out: StorePaths = {};
    for (const name of names) {
        const p = paths[name];
        if (typeof p !== "string" || !/^\/\S+\/[a-z0-9]{32}-\S+$/.test(p)) {
            throw new Error(`nix eval: no store path for ${name} (got ${JSON.stringify(p)}); its expression must evaluate to a derivation`);
        }
        out[name] = p;
    }
    return out;
}

/**
 * Evaluates the output store paths in `dir` (the project directory, where the
 * builds run too). NIX overrides the nix binary, as for host/nix-build.sh;
 * NIX_CONFIG passes site settings through.
 */
export function evaluateStorePaths(expressions: NixExpressions, dir: string): Promise<StorePaths> {
    const names = Object.keys(expressions).sort();
    if (names.length === 0) return Promise.resolve({});
    const nix = process.env.NIX || "nix";
    const args = ["--extra-experimental-features", "nix-command flakes", "eval", "--read-only", "--impure", "--json", "--expr", storePathsExpression(expressions)];
    return new Promise((resolve, reject) => {
        execFile(
            nix,
            args,
            // PWD as a shell started in dir would set it: an impure flake may read it (the ci fixture does).
            { cwd: dir, env: { ...process.env, PWD: dir }, timeout: constants.timeoutsSeconds.build * 1000, maxBuffer: 16 * 1024 * 1024 },
            (error, stdout, stderr) => {
                if (error) {
                    const tail = String(stderr).trim().split("\n").slice(-30).join("\n");
                    const how = error.killed ? `timed out after ${constants.timeoutsSeconds.build}s` : `failed (${error.code ?? error.message})`;
                    reject(new Error(`evaluating what Nix would build (${names.join(", ")}) ${how}; fix the flake or its config:\n${tail}`));
                    return;
                }
                try {
                    resolve(parseStorePaths(String(stdout), names));
                } catch (e) {
                    reject(e);
                }
            },
        );
    });
}

/**
 * The evaluator index.ts uses. A seam for tests that load index.ts under
 * Pulumi's mocks, where the dev stack's flake cannot be evaluated.
 */
export const storePathEvaluator: { evaluate(expressions: NixExpressions, dir: string): Promise<StorePaths> } = {
    evaluate: evaluateStorePaths,
};
