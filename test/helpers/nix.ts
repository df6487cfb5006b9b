/**
 * Shared harness for tests that run the real `nix` (Debian's nix 2.8 here).
 *
 * These machines have no Nix daemon, no build users and no network, so the
 * tests run nix as root against the local store with the sandbox off and no
 * substituters. nix reads those settings from NIX_CONFIG, which is also how a
 * user would pass them to host/nix-build.sh.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export const repoRoot = path.resolve(__dirname, "..", "..");
export const nixBuildScript = path.join(repoRoot, "host", "nix-build.sh");

/** nix.conf lines for an offline single-user store without build users. */
export const offlineNixConfig = [
    "experimental-features = nix-command flakes",
    "sandbox = false",
    "substituters =",
    "build-users-group =",
].join("\n");

export function nixEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    return { ...process.env, NIX_CONFIG: offlineNixConfig, ...extra };
}

/** Tools every nix test needs (for requireTools). */
export const nixTools = ["nix", "nix-instantiate", "jq"];

export interface RunResult {
    code: number;
    stdout: string;
    stderr: string;
}

/** Runs a command to completion; never throws on a non-zero exit. */
export function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = nixEnv(), timeoutMs = 120_000): Promise<RunResult> {
    return new Promise((resolve) => {
        execFile(cmd, args, { env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
            let code = 0;
            if (error) {
                const c = (error as NodeJS.ErrnoException & { code?: number | string }).code;
                code = typeof c === "number" ? c : 1;
            }
            resolve({ code, stdout: stdout.toString(), stderr: stderr.toString() });
        });
    });
}

/** `nix-instantiate --eval --strict --json` of a file or an expression. */
export async function nixEvalJson<T>(args: { file: string } | { expr: string }): Promise<T> {
    const a = ["--eval", "--strict", "--json"];
    if ("file" in args) a.push(args.file);
    else a.push("--expr", args.expr);
    const r = await run("nix-instantiate", a);
    if (r.code !== 0) {
        throw new Error(`nix-instantiate ${a.join(" ")} failed (${r.code}): ${r.stderr}`);
    }
    return JSON.parse(r.stdout) as T;
}

/** The stderr of a failing `nix-instantiate --eval` (for checking error messages). */
export async function nixEvalError(expr: string): Promise<string> {
    const r = await run("nix-instantiate", ["--eval", "--strict", "--json", "--expr", expr]);
    if (r.code === 0) {
        throw new Error(`expected evaluation to fail, got ${r.stdout}`);
    }
    return r.stderr;
}

/** A fresh temporary directory under the OS tmpdir, named for issue 3. */
export function tempDir(prefix = "pe3-"): string {
    return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
