/** Running a command to completion from a test without blocking the event loop. */
import { spawn } from "node:child_process";

export interface RunResult {
    /** Exit status; null when a signal ended it (e.g. the timeout's SIGKILL). */
    code: number | null;
    stdout: string;
    stderr: string;
}

export interface RunOptions {
    cwd?: string;
    /** The whole environment (default: this process's). */
    env?: NodeJS.ProcessEnv;
    /** SIGKILL after this many milliseconds (default: no limit). */
    timeoutMs?: number;
}

/**
 * Runs a command to completion; never throws for a non-zero exit, rejects only
 * when it cannot start. Asynchronous, so servers inside this test process
 * (fake pmproxy, health endpoints) keep answering while it runs.
 */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
        const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
        const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs);
        child.once("error", reject);
        child.once("close", (code) => {
            if (timer) clearTimeout(timer);
            resolve({ code, stdout, stderr });
        });
    });
}
