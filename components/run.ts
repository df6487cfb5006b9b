/**
 * The one way the program runs a host command: async (the language host is
 * never blocked), stderr passed on line by line as it comes, one error policy
 * (the command, its exit code or signal, and the tail of its stderr) and one
 * parser for the host scripts' "last line of stdout is JSON". The provider
 * plugin has the same in Go (provider/run.go).
 */

import * as childProcess from "node:child_process";
import * as nodePath from "node:path";

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

/** A path relative to the project when it lies inside it, so recorded inputs do not name the checkout's location. */
export function projectRelative(file: string, projectDir: string): string {
    const rel = nodePath.relative(projectDir, file);
    return rel !== "" && !rel.startsWith("..") && !nodePath.isAbsolute(rel) ? rel : file;
}
