/**
 * A Docker daemon for integration tests.
 *
 * When `docker info` answers (a running dockerd, DOCKER_HOST or a docker
 * context), that daemon is used and left alone. Otherwise the harness starts
 * a dockerd of its own, as root, with everything of its own under one temp
 * dir: unix socket, pid file, data root, exec root (and the containerd it
 * manages). Its containers hang on a bridge the harness creates (prefix
 * "pedkr") with a free 172.31.x.0/24; --iptables=false keeps it from touching
 * the host's firewall, and published ports work through docker-proxy (the
 * userland proxy). stop() ends exactly the dockerd it started, by PID (then
 * the containerd that dockerd managed, by the PID in its pid file, if it
 * outlived it), unmounts what is left under the dir, deletes the bridge and
 * the dir.
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { constants } from "../../components/constants";
import { haveCommand, isRoot } from "./tools";

export interface DockerDaemon {
    /** Environment for docker clients of this daemon (DOCKER_HOST set when the harness started it). */
    env: NodeJS.ProcessEnv;
    /** The DOCKER_HOST value clients use, or undefined for the docker CLI's default. */
    host: string | undefined;
    /** True when this harness started the daemon (and stop() will end it). */
    started: boolean;
    pid?: number;
    /** The daemon's server version. */
    version: string;
    /** For a started daemon: the bridge its containers use and the dir that holds all its state. */
    bridge?: string;
    dir?: string;
    /** Ends what the harness started; a no-op for a daemon it found running. */
    stop(): Promise<void>;
}

/** The server version when a daemon answers with this environment, else undefined. */
export function dockerServerVersion(env: NodeJS.ProcessEnv = process.env, timeoutMs = 15000): string | undefined {
    const r = spawnSync("docker", ["version", "--format", "{{.Server.Version}}"], { env, encoding: "utf8", timeout: timeoutMs });
    return r.status === 0 && r.stdout.trim() !== "" ? r.stdout.trim() : undefined;
}

/** Why a Docker daemon cannot be had here, or undefined when one can. */
export function dockerUnavailableReason(): string | undefined {
    if (!haveCommand("docker")) return "the docker CLI is not installed";
    if (dockerServerVersion() !== undefined) return undefined;
    if (!haveCommand("dockerd")) return "no Docker daemon answers and dockerd is not installed";
    if (!isRoot()) return "no Docker daemon answers and starting dockerd needs root";
    if (!haveCommand("ip")) return "ip (iproute2) is needed to give a started dockerd its bridge";
    return undefined;
}

function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

export function processAlive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
}

/** A /24 in 172.31.0.0/16 that no address or route of this host uses. */
function freeSubnet(): string {
    const used = execFileSync("ip", ["-4", "-o", "addr", "show"], { encoding: "utf8" }) + execFileSync("ip", ["-4", "route", "show", "table", "all"], { encoding: "utf8" });
    for (let attempt = 0; attempt < 64; attempt++) {
        const third = crypto.randomInt(16, 250);
        if (!used.includes(`172.31.${third}.`)) return `172.31.${third}`;
    }
    throw new Error("dockerd harness: no free 172.31.x.0/24 for the bridge");
}

export function tail(file: string, lines = 15): string {
    try {
        return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
        return "(no log)";
    }
}

/** Mount points below dir, deepest first. */
export function mountsBelow(dir: string): string[] {
    const info = fs.readFileSync("/proc/self/mountinfo", "utf8");
    return info
        .split("\n")
        .map((line) => line.split(" ")[4])
        .filter((mp): mp is string => mp !== undefined && (mp === dir || mp.startsWith(`${dir}/`)))
        .sort((a, b) => b.length - a.length);
}

async function waitForExit(child: ChildProcess, exited: Promise<void>, ms: number): Promise<boolean> {
    if (child.exitCode !== null || child.signalCode !== null) return true;
    const timer = sleep(ms).then(() => false);
    return Promise.race([exited.then(() => true), timer]);
}

export interface EnsureOptions {
    /** Start a daemon of the harness's own even when one is running (to test the harness). */
    own?: boolean;
}

/**
 * Uses the running daemon, or starts one. Call stop() in teardown either way.
 */
export async function ensureDockerd(options: EnsureOptions = {}): Promise<DockerDaemon> {
    if (!options.own) {
        const running = dockerServerVersion();
        if (running !== undefined) {
            return { env: { ...process.env }, host: process.env.DOCKER_HOST, started: false, version: running, stop: async () => {} };
        }
    }
    for (const tool of ["docker", "dockerd", "ip"]) {
        if (!haveCommand(tool)) throw new Error(`dockerd harness: ${tool} is not installed`);
    }
    if (!isRoot()) throw new Error("dockerd harness: starting dockerd needs root");

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe-dockerd-"));
    const bridge = `pedkr${crypto.randomBytes(3).toString("hex")}`;
    const subnet = freeSubnet();
    const socket = path.join(dir, "docker.sock");
    const pidFile = path.join(dir, "dockerd.pid");
    const logFile = path.join(dir, "dockerd.log");
    const host = `unix://${socket}`;
    const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: host };

    let bridgeCreated = false;
    let child: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();

    const cleanup = async (): Promise<void> => {
        const shutdownMs = constants.timeoutsSeconds.shutdown * 1000;
        if (child?.pid !== undefined) {
            const pid = child.pid;
            if (child.exitCode === null && child.signalCode === null) {
                process.kill(pid, "SIGTERM");
                if (!(await waitForExit(child, exited, shutdownMs))) {
                    process.kill(pid, "SIGKILL");
                    await waitForExit(child, exited, shutdownMs);
                }
            }
        }
        // The containerd this dockerd managed normally ends with it; if not, end that one PID.
        const containerdPidFile = path.join(dir, "exec", "containerd", "containerd.pid");
        if (fs.existsSync(containerdPidFile)) {
            const cpid = Number(fs.readFileSync(containerdPidFile, "utf8").trim());
            if (Number.isInteger(cpid) && cpid > 1 && processAlive(cpid)) {
                const cmdline = fs.readFileSync(`/proc/${cpid}/cmdline`, "utf8");
                if (cmdline.includes(dir)) {
                    process.kill(cpid, "SIGTERM");
                    for (let i = 0; i < 40 && processAlive(cpid); i++) await sleep(250);
                    if (processAlive(cpid)) process.kill(cpid, "SIGKILL");
                }
            }
        }
        for (const mp of mountsBelow(dir)) spawnSync("umount", ["-l", mp]);
        if (bridgeCreated) spawnSync("ip", ["link", "del", bridge]);
        fs.rmSync(dir, { recursive: true, force: true });
        process.removeListener("exit", lastResort);
    };
    // If the test process dies without teardown, at least stop the daemon.
    const lastResort = (): void => {
        if (child?.pid !== undefined && child.exitCode === null) {
            try {
                process.kill(child.pid, "SIGTERM");
            } catch {
                /* already gone */
            }
        }
    };
    process.on("exit", lastResort);

    try {
        execFileSync("ip", ["link", "add", bridge, "type", "bridge"]);
        bridgeCreated = true;
        execFileSync("ip", ["addr", "add", `${subnet}.1/24`, "dev", bridge]);
        execFileSync("ip", ["link", "set", bridge, "up"]);

        const log = fs.openSync(logFile, "a");
        child = spawn(
            "dockerd",
            [
                "--host",
                host,
                "--pidfile",
                pidFile,
                "--data-root",
                path.join(dir, "data"),
                "--exec-root",
                path.join(dir, "exec"),
                "--bridge",
                bridge,
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--userland-proxy=true",
                "--log-level",
                "warn",
            ],
            { detached: true, stdio: ["ignore", log, log] },
        );
        fs.closeSync(log);
        const proc = child;
        exited = new Promise((resolve) => proc.once("exit", () => resolve()));
        child.unref();

        const deadline = Date.now() + constants.timeoutsSeconds.services * 1000;
        let version: string | undefined;
        while (version === undefined) {
            if (child.exitCode !== null || child.signalCode !== null) {
                throw new Error(`dockerd exited during start (${child.exitCode ?? child.signalCode}); its log:\n${tail(logFile)}`);
            }
            if (Date.now() > deadline) {
                throw new Error(`dockerd did not answer on ${host} within ${constants.timeoutsSeconds.services}s; its log:\n${tail(logFile)}`);
            }
            await sleep(250);
            version = dockerServerVersion(env, 5000);
        }
        const pidInFile = Number(fs.readFileSync(pidFile, "utf8").trim());
        if (pidInFile !== child.pid) {
            throw new Error(`dockerd pid file says ${pidInFile}, but the harness started ${child.pid}`);
        }
        return { env, host, started: true, pid: child.pid, version, bridge, dir, stop: cleanup };
    } catch (err) {
        await cleanup();
        throw err;
    }
}
