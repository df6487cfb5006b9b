/**
 * A real OpenSSH server on a free 127.0.0.1 port, for tests of what runs over
 * SSH: its own host key, one authorised client key, key login only, every
 * file in a temporary directory. Stops exactly the PID it started.
 */
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { freePort } from "./ports";

export const sshdBinary = "/usr/sbin/sshd";

export interface SshdHarness {
    host: string;
    port: number;
    user: string;
    identityFile: string;
    dir: string;
    /** What sshd logged so far (-e: to stderr), e.g. its "Accepted publickey" lines. */
    log(): string;
    stop(): Promise<void>;
}


async function waitForPort(port: number, child: ChildProcess, stderr: () => string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let delay = 50;
    while (Date.now() < deadline) {
        if (child.exitCode !== null) throw new Error(`sshd exited with ${child.exitCode}: ${stderr()}`);
        const open = await new Promise<boolean>((resolve) => {
            const socket = net.connect(port, "127.0.0.1");
            socket.once("connect", () => { socket.destroy(); resolve(true); });
            socket.once("error", () => resolve(false));
        });
        if (open) return;
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 500);
    }
    throw new Error(`sshd did not listen on 127.0.0.1:${port} within ${timeoutMs} ms: ${stderr()}`);
}

export async function startSshd(): Promise<SshdHarness> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe8-sshd-"));
    const keygen = (file: string) => execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", file], { stdio: "ignore" });
    keygen(path.join(dir, "host_ed25519"));
    keygen(path.join(dir, "id_ed25519"));
    fs.copyFileSync(path.join(dir, "id_ed25519.pub"), path.join(dir, "authorized_keys"));
    const port = await freePort();
    const config = [
        `Port ${port}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${path.join(dir, "host_ed25519")}`,
        `PidFile ${path.join(dir, "sshd.pid")}`,
        `AuthorizedKeysFile ${path.join(dir, "authorized_keys")}`,
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        // The temporary directory is not root-owned all the way up as StrictModes wants.
        "StrictModes no",
        "UsePAM no",
        "",
    ].join("\n");
    fs.writeFileSync(path.join(dir, "sshd_config"), config);
    // sshd's privilege separation directory, which the package's service would create.
    fs.mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
    let errors = "";
    const child = spawn(sshdBinary, ["-D", "-e", "-f", path.join(dir, "sshd_config")], { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr?.on("data", (b: Buffer) => { errors += b.toString(); });
    const stop = async (): Promise<void> => {
        if (child.exitCode === null && child.signalCode === null) {
            const exited = new Promise((resolve) => child.once("exit", resolve));
            child.kill("SIGTERM");
            await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
            if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        }
        fs.rmSync(dir, { recursive: true, force: true });
    };
    try {
        await waitForPort(port, child, () => errors, 10000);
    } catch (err) {
        await stop();
        throw err;
    }
    return { host: "127.0.0.1", port, user: os.userInfo().username, identityFile: path.join(dir, "id_ed25519"), dir, log: () => errors, stop };
}
