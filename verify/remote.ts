/**
 * Running a small POSIX shell script on a target: over SSH for VMs, or with the
 * local `sh` (the same script, another transport) for tests on this host.
 */
import { spawn } from "node:child_process";
import type { SshEndpoint } from "./types";

export interface ShellResult {
    code: number;
    stdout: string;
    stderr: string;
}

/** Runs `script` with `args` as $1.. on some host; `where` names the host in messages. */
export interface RemoteShell {
    where: string;
    run(script: string, args: readonly string[], timeoutMs: number): Promise<ShellResult>;
}

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
    return `'${word.replace(/'/g, `'\\''`)}'`;
}

function runProcess(cmd: string, argv: readonly string[], stdin: string, timeoutMs: number, where: string): Promise<ShellResult> {
    return new Promise((resolve, reject) => {
        const child = spawn(cmd, argv, { stdio: ["pipe", "pipe", "pipe"] });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        let timedOut = false;
        const timer = setTimeout(() => {
            timedOut = true;
            child.kill("SIGTERM");
        }, Math.max(1, timeoutMs));
        child.stdout.on("data", (c: Buffer) => out.push(c));
        child.stderr.on("data", (c: Buffer) => err.push(c));
        child.on("error", (e) => {
            clearTimeout(timer);
            reject(new Error(`${where}: cannot run ${cmd}: ${e.message}`));
        });
        child.on("close", (code, signal) => {
            clearTimeout(timer);
            if (timedOut) {
                reject(new Error(`${where}: no answer within ${timeoutMs} ms`));
                return;
            }
            resolve({
                code: code ?? (signal ? 128 : 1),
                stdout: Buffer.concat(out).toString("utf8"),
                stderr: Buffer.concat(err).toString("utf8"),
            });
        });
        child.stdin.on("error", () => undefined);
        child.stdin.end(stdin);
    });
}

/**
 * ssh's arguments: batch mode (never a password prompt), no host key
 * bookkeeping (the VMs are recreated with new host keys), the script on stdin
 * of `sh -s` with `args` as its $1... With the stack's key only that key is
 * offered; without one (the user supplied their own public key), ssh uses the
 * user's keys and agent.
 */
export function sshArgv(ssh: SshEndpoint, timeoutMs: number, args: readonly string[]): string[] {
    const connectTimeout = Math.max(1, Math.ceil(timeoutMs / 1000));
    const identity = ssh.identityFile !== undefined ? ["-i", ssh.identityFile, "-o", "IdentitiesOnly=yes"] : [];
    return [
        ...identity,
        "-p", String(ssh.port),
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR",
        "-o", `ConnectTimeout=${connectTimeout}`,
        `${ssh.user}@${ssh.host}`,
        ["sh", "-s", "--", ...args.map(shellQuote)].join(" "),
    ];
}

export function sshShell(ssh: SshEndpoint): RemoteShell {
    const where = `ssh ${ssh.user}@${ssh.host}:${ssh.port}`;
    return {
        where,
        run: (script, args, timeoutMs) => runProcess("ssh", sshArgv(ssh, timeoutMs, args), script, timeoutMs, where),
    };
}

/** The local `sh`: runs the very script the SSH transport sends, against this host's files. */
export function localShell(where = "local sh"): RemoteShell {
    return {
        where,
        run(script, args, timeoutMs) {
            return runProcess("sh", ["-s", "--", ...args], script, timeoutMs, where);
        },
    };
}
