/**
 * The one way components and dynamic providers run a host command: async (a
 * provider never blocks the language host, so independent resources run in
 * parallel), stderr passed on line by line as it comes (the only log channel
 * a dynamic provider has: Pulumi shows the provider's stderr), one error
 * policy (the command, its exit code or signal, and the tail of its stderr)
 * and one parser for the host scripts' "last line of stdout is JSON".
 *
 * Dynamic providers are serialized by closure capture, so node modules are
 * required inside the functions.
 */

export interface RunOptions {
    /** Working directory. */
    cwd?: string;
    /** Pass stderr on, line by line, to this process's stderr. Default true. */
    echo?: boolean;
    /** Kill the command (SIGTERM) after this long. */
    timeoutMs?: number;
    /** How errors name the command; default the command line. */
    label?: string;
    /** How many last lines of stderr an error carries. Default 40. */
    tailLines?: number;
}

export interface RunResult {
    /** Without the final newline. */
    stdout: string;
    stderr: string;
}

/** Runs FILE ARGS; resolves with its output when it exits 0, rejects naming the command, its exit status and stderr's tail. */
export function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const childProcess: typeof import("node:child_process") = require("node:child_process");
    const label = options.label ?? [file, ...args].join(" ");
    return new Promise((resolve, reject) => {
        const child = childProcess.spawn(file, [...args], {
            cwd: options.cwd,
            stdio: ["ignore", "pipe", "pipe"],
            timeout: options.timeoutMs,
        });
        const out: Buffer[] = [];
        let err = "";
        let partial = "";
        child.stdout.on("data", (b: Buffer) => out.push(b));
        child.stderr.on("data", (b: Buffer) => {
            const text = b.toString("utf8");
            err += text;
            if (options.echo === false) return;
            // Whole lines only, so that parallel resources do not interleave mid-line.
            const lines = (partial + text).split("\n");
            partial = lines.pop() ?? "";
            if (lines.length > 0) process.stderr.write(lines.join("\n") + "\n");
        });
        child.on("error", (e) => reject(new Error(`${label}: cannot run ${file}: ${e.message}`)));
        child.on("close", (code, signal) => {
            if (options.echo !== false && partial !== "") process.stderr.write(partial + "\n");
            const stdout = Buffer.concat(out).toString("utf8").replace(/\n$/, "");
            const stderr = err.replace(/\n$/, "");
            if (code === 0) {
                resolve({ stdout, stderr });
                return;
            }
            const status = signal ? `signal ${signal}` : `exit ${code}`;
            const tail = stderr.trim().split("\n").slice(-(options.tailLines ?? 40)).join("\n");
            reject(new Error(`${label} failed (${status})${tail ? `:\n${tail}` : ""}`));
        });
    });
}

/** The host scripts' contract: the last line of stdout is one JSON value. */
export function parseLastJsonLine<T>(stdout: string, label: string): T {
    const line = stdout.trim().split("\n").pop() ?? "";
    try {
        return JSON.parse(line) as T;
    } catch {
        throw new Error(`${label}: expected one JSON line on stdout, got: ${stdout.slice(0, 400)}`);
    }
}

/** run, then parseLastJsonLine of its stdout. */
export async function runJson<T>(file: string, args: readonly string[], options: RunOptions = {}): Promise<T> {
    const label = options.label ?? [file, ...args].join(" ");
    const { stdout } = await run(file, args, { ...options, label });
    return parseLastJsonLine<T>(stdout, label);
}

/**
 * Whether two recorded inputs name the same state directory: the same text,
 * or the same place once each relative path is resolved against its own
 * project directory (`dir`), so a move of the checkout is not a new place.
 */
export function sameStateDir(a: { dir?: string; stateDir: string }, b: { dir?: string; stateDir: string }): boolean {
    const nodePath: typeof import("node:path") = require("node:path");
    return a.stateDir === b.stateDir || nodePath.resolve(a.dir ?? "/", a.stateDir) === nodePath.resolve(b.dir ?? "/", b.stateDir);
}

/** A path relative to the project when it lies inside it, so recorded inputs do not name the checkout's location. */
export function projectRelative(file: string, projectDir: string): string {
    const nodePath: typeof import("node:path") = require("node:path");
    const rel = nodePath.relative(projectDir, file);
    return rel !== "" && !rel.startsWith("..") && !nodePath.isAbsolute(rel) ? rel : file;
}

/**
 * The directory a provider runs a host script in: the recorded project
 * directory, or this process's own when that one is gone. A checkout moved
 * before any `up` recorded its new place (a destroy or refresh right after the
 * move) still finds its scripts and state: Pulumi starts the provider plugin in
 * the project directory, and scripts and state directories are recorded
 * relative to it.
 */
export function projectWorkDir(dir: string | undefined): string | undefined {
    const fs: typeof import("node:fs") = require("node:fs");
    return dir === undefined || fs.existsSync(dir) ? dir : process.cwd();
}

/**
 * A state directory as an absolute path: resolved against the working
 * directory the script runs in. For scripts that hand the path to another
 * process (net.sh's sudo helper checks that it is absolute).
 */
export function absoluteStateDir(stateDir: string, dir: string | undefined): string {
    const nodePath: typeof import("node:path") = require("node:path");
    return nodePath.resolve(projectWorkDir(dir) ?? process.cwd(), stateDir);
}
