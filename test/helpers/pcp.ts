/**
 * Test harness for the REAL Performance Co-Pilot daemons and node_exporter on
 * loopback: Debian's pmcd (with its pmcd and linux PMDAs) and pmproxy, each on a
 * free 127.0.0.1 port of its own, with every file (namespace, config, sockets,
 * logs) in a private temporary directory, so a developer's own pmcd on the
 * default ports is left alone. Only the PIDs started here are stopped (and the
 * linux PMDA that this pmcd reports having started, should it outlive pmcd).
 *
 * Also: Debian's prometheus-node-exporter on a loopback port, and a small HTTP
 * server for Prometheus's health endpoint (not installable here; it stands in
 * for nothing but the health URL). Grafana's stand-in is in ./grafana.ts.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, openSync, closeSync, readFileSync } from "node:fs";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import * as http from "node:http";
import * as net from "node:net";
import { freePort } from "./ports";

export { freePort };
import * as os from "node:os";
import * as path from "node:path";
import { constants } from "../../components/constants";

/** Directories from /etc/pcp.conf (or $PCP_CONF), with Debian's layout as the fallback. */
export interface PcpLayout {
    binadm: string;
    pmdas: string;
    pmnsSources: string;
}

export function pcpLayout(): PcpLayout {
    const conf = process.env.PCP_CONF ?? "/etc/pcp.conf";
    const vars: Record<string, string> = {};
    if (existsSync(conf)) {
        for (const line of readFileSync(conf, "utf8").split("\n")) {
            const m = /^(PCP_[A-Z_]+)=(.*)$/.exec(line.trim());
            if (m) vars[m[1]] = m[2].replace(/^"|"$/g, "");
        }
    }
    const binadm = vars.PCP_BINADM_DIR ?? "/usr/lib/pcp/bin";
    const pmdas = vars.PCP_PMDAS_DIR ?? "/var/lib/pcp/pmdas";
    // Debian ships the per-PMDA namespace fragments in /usr/lib/pcp/pmns (linked from $PCP_VAR_DIR/pmns).
    const candidates = [path.join(vars.PCP_VAR_DIR ?? "/var/lib/pcp", "pmns"), "/usr/lib/pcp/pmns"];
    const pmnsSources = candidates.find((d) => existsSync(path.join(d, "root_linux"))) ?? candidates[0];
    return { binadm, pmdas, pmnsSources };
}

const bin = (layout: PcpLayout, name: string): string => path.join(layout.binadm, name);

/** Everything the harness needs from the pcp package, or the first thing missing. */
export function pcpMissing(): string | undefined {
    const l = pcpLayout();
    const needs: Array<[string, string]> = [
        [bin(l, "pmcd"), "pmcd"],
        [bin(l, "pmproxy"), "pmproxy"],
        [bin(l, "pmnsmerge"), "pmnsmerge"],
        [path.join(l.pmdas, "linux", "pmdalinux"), "the linux PMDA"],
        [path.join(l.pmdas, "pmcd", "pmda_pmcd.so"), "the pmcd PMDA"],
        [path.join(l.pmnsSources, "root_linux"), "the linux PMNS"],
        [path.join(l.pmnsSources, "root_pmcd"), "the pmcd PMNS"],
    ];
    for (const [file, what] of needs) if (!existsSync(file)) return `Debian's pcp is not installed (${what}: ${file} missing; run scripts/install-test-deps.sh)`;
    return undefined;
}

/** Needs in requireTools form. */
export const pcpNeeds: Array<[string, () => boolean]> = [["Debian's pcp (pmcd, pmproxy, linux PMDA)", () => pcpMissing() === undefined]];


const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** How long the harness waits for a daemon it started to answer. */
const readyTimeoutMs = constants.timeoutsSeconds.services * 1000;
const pollMs = 100;

/** A child process started by the harness, stopped by its PID only. */
export class Daemon {
    readonly pid: number;
    private exited: Promise<void>;
    private exitInfo: string | undefined;

    constructor(
        readonly name: string,
        readonly child: ChildProcess,
        readonly logFile: string,
    ) {
        if (child.pid === undefined) throw new Error(`${name}: spawn failed (see ${logFile})`);
        this.pid = child.pid;
        this.exited = new Promise((resolve) => {
            child.once("exit", (code, signal) => {
                this.exitInfo = signal ? `signal ${signal}` : `exit code ${code}`;
                resolve();
            });
        });
    }

    get running(): boolean {
        return this.exitInfo === undefined;
    }

    /** How it ended ("exit code N", "signal S"), or undefined while it runs. */
    get exit(): string | undefined {
        return this.exitInfo;
    }

    log(): string {
        try {
            return readFileSync(this.logFile, "utf8");
        } catch {
            return "";
        }
    }

    /** Waits until `ready()` is true; throws with the daemon's log when it exits or times out. */
    async waitReady(ready: () => Promise<boolean>): Promise<void> {
        const deadline = Date.now() + readyTimeoutMs;
        while (Date.now() < deadline) {
            if (!this.running) throw new Error(`${this.name} (pid ${this.pid}) exited (${this.exitInfo}) before it was ready:\n${this.log()}`);
            if (await ready().catch(() => false)) return;
            await sleep(pollMs);
        }
        throw new Error(`${this.name} (pid ${this.pid}) not ready within ${readyTimeoutMs} ms:\n${this.log()}`);
    }

    /** SIGTERM this PID, then SIGKILL it if it has not exited in time. */
    async stop(): Promise<void> {
        if (!this.running) return;
        this.child.kill("SIGTERM");
        const graceMs = constants.timeoutsSeconds.processStart * 1000;
        const timedOut = await Promise.race([this.exited.then(() => false), sleep(graceMs).then(() => true)]);
        if (timedOut && this.running) {
            this.child.kill("SIGKILL");
            await this.exited;
        }
    }
}

function spawnDaemon(name: string, file: string, args: string[], env: NodeJS.ProcessEnv, logFile: string): Daemon {
    const fd = openSync(logFile, "a");
    try {
        const child = spawn(file, args, { env, stdio: ["ignore", fd, fd] });
        return new Daemon(name, child, logFile);
    } finally {
        closeSync(fd);
    }
}

/** The environment for PCP daemons: this process's, minus PCP_/PMCD_/PMPROXY_ settings, plus ours. */
function pcpEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) {
        if (/^(PCP_|PMCD_|PMPROXY_)/.test(k) && k !== "PCP_CONF") continue;
        env[k] = v;
    }
    return { ...env, ...extra };
}

/** True while `pid` is a live process (a zombie has exited and does not count). */
export function processExists(pid: number): boolean {
    try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
    } catch {
        return false;
    }
}

export interface PcpHarness {
    dir: string;
    pmcd: { host: string; port: number };
    pmproxyUrl: string;
    pmcdDaemon: Daemon;
    /** The pmproxy running now (restartPmproxy replaces it). */
    readonly pmproxyDaemon: Daemon;
    /** Starts pmproxy again on the same port, after it ended (a crash): the URL stays valid. */
    restartPmproxy(): Promise<void>;
    /** PIDs of the PMDAs this pmcd started (from its log). */
    agentPids(): number[];
    stopPmcd(): Promise<void>;
    stop(): Promise<void>;
}

/**
 * Starts pmcd (pmcd and linux PMDAs, a namespace merged from Debian's fragments)
 * and pmproxy (REST API only, no key server) on free loopback ports.
 */
export async function startPcp(): Promise<PcpHarness> {
    const missing = pcpMissing();
    if (missing) throw new Error(missing);
    const layout = pcpLayout();
    const dir = await mkdtemp(path.join(os.tmpdir(), "pe8-pcp-"));
    const runDir = path.join(dir, "run");
    const logDir = path.join(dir, "log");
    const tmpDir = path.join(dir, "tmp");
    await Promise.all([mkdir(runDir), mkdir(path.join(logDir, "pmcd"), { recursive: true }), mkdir(tmpDir)]);

    const pmns = path.join(dir, "root");
    execFileSync(bin(layout, "pmnsmerge"), [path.join(layout.pmnsSources, "root_pmcd"), path.join(layout.pmnsSources, "root_linux"), pmns], {
        stdio: ["ignore", "ignore", "pipe"],
    });
    const pmcdConf = path.join(dir, "pmcd.conf");
    await writeFile(
        pmcdConf,
        [
            "# pe8 test pmcd: the pmcd PMDA in-process, the linux PMDA over pipes",
            `pmcd\t2\tdso\tpmcd_init\t${path.join(layout.pmdas, "pmcd", "pmda_pmcd.so")}`,
            `linux\t60\tpipe\tbinary\t\t${path.join(layout.pmdas, "linux", "pmdalinux")}`,
            "",
            "[access]",
            'disallow ".*" : store;',
            'disallow ":*" : store;',
            'allow "local:*" : all;',
            "",
        ].join("\n"),
    );
    const pmproxyConf = path.join(dir, "pmproxy.conf");
    await writeFile(
        pmproxyConf,
        [
            "# pe8 test pmproxy: PMWEBAPI over HTTP only; no key server, discovery or search",
            "[pmproxy]",
            "pcp.enabled = true",
            "http.enabled = true",
            "redis.enabled = false",
            "secure.enabled = false",
            "[redis]",
            "enabled = false",
            "[discover]",
            "enabled = false",
            "[pmsearch]",
            "enabled = false",
            "[pmseries]",
            "enabled = false",
            "",
        ].join("\n"),
    );

    const host = "127.0.0.1";
    const pmcdPort = await freePort();
    const pmproxyPort = await freePort();
    const user = os.userInfo().username;
    const env = pcpEnv({ PCP_RUN_DIR: runDir, PCP_LOG_DIR: logDir, PCP_TMP_DIR: tmpDir, PMCD_PORT: String(pmcdPort) });

    const pmcdLog = path.join(logDir, "pmcd.log");
    const pmcdDaemon = spawnDaemon(
        "pmcd",
        bin(layout, "pmcd"),
        ["-f", "-A", "-p", String(pmcdPort), "-i", host, "-c", pmcdConf, "-n", pmns, "-l", pmcdLog, "-s", path.join(runDir, "pmcd.socket"), "-U", user, "-x", path.join(logDir, "pmcd.err")],
        env,
        path.join(logDir, "pmcd.stdout"),
    );
    const readLog = (f: string): string => {
        try {
            return readFileSync(f, "utf8");
        } catch {
            return "";
        }
    };
    const agentPids = (): number[] => {
        // pmcd's agent table: "linux         60  8744   6   7 ..." (label, domain, pid, ...).
        const pids: number[] = [];
        for (const m of readLog(pmcdLog).matchAll(/^(\S+)\s+\d+\s+(\d+)\s+\d+\s+\d+\s+\d+\s+bin\s/gm)) pids.push(Number(m[2]));
        return [...new Set(pids)];
    };
    let pmproxyDaemon: Daemon | undefined;
    const stopPmcd = async (): Promise<void> => {
        const agents = agentPids();
        await pmcdDaemon.stop();
        // pmcd ends its agents itself; one that outlives it is ours (listed in our pmcd's log), end it by PID.
        for (const pid of agents) {
            const deadline = Date.now() + constants.timeoutsSeconds.processStart * 1000;
            while (processExists(pid) && Date.now() < deadline) await sleep(pollMs);
            if (processExists(pid)) process.kill(pid, "SIGKILL");
        }
    };
    const stopAll = async (): Promise<void> => {
        if (pmproxyDaemon) await pmproxyDaemon.stop();
        await stopPmcd();
        await rm(dir, { recursive: true, force: true });
    };
    try {
        await pmcdDaemon.waitReady(async () => {
            if (agentPids().length === 0) return false;
            return new Promise<boolean>((resolve) => {
                const s = net.connect({ host, port: pmcdPort });
                s.once("connect", () => {
                    s.destroy();
                    resolve(true);
                });
                s.once("error", () => resolve(false));
            });
        });
        const pmproxyUrl = `http://${host}:${pmproxyPort}`;
        const startPmproxy = async (): Promise<void> => {
            const started = spawnDaemon(
                "pmproxy",
                bin(layout, "pmproxy"),
                ["-f", "-A", "-p", String(pmproxyPort), "-i", host, "-c", pmproxyConf, "-l", path.join(logDir, "pmproxy.log"), "-s", path.join(runDir, "pmproxy.socket"), "-U", user, "-x", path.join(logDir, "pmproxy.err")],
                env,
                path.join(logDir, "pmproxy.stdout"),
            );
            pmproxyDaemon = started;
            await started.waitReady(async () => (await getStatus(`${pmproxyUrl}/pmapi/context`)) === 200);
        };
        await startPmproxy();
        return {
            dir,
            pmcd: { host, port: pmcdPort },
            pmproxyUrl,
            pmcdDaemon,
            get pmproxyDaemon() {
                return pmproxyDaemon!;
            },
            restartPmproxy: async () => {
                if (pmproxyDaemon?.running) throw new Error(`pmproxy (pid ${pmproxyDaemon.pid}) is still running`);
                await startPmproxy();
            },
            agentPids,
            stopPmcd,
            stop: stopAll,
        };
    } catch (err) {
        await stopAll();
        throw err;
    }
}

function getStatus(url: string): Promise<number> {
    return new Promise((resolve) => {
        const req = http.get(url, (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.setTimeout(readyTimeoutMs, () => req.destroy());
        req.on("error", () => resolve(0));
    });
}

export interface NodeExporterHarness {
    url: string;
    daemon: Daemon;
    stop(): Promise<void>;
}

export const nodeExporterBinary = "prometheus-node-exporter";

/** Debian's node_exporter with the collectors parity needs (loadavg, meminfo) on a free loopback port. */
export async function startNodeExporter(): Promise<NodeExporterHarness> {
    const dir = await mkdtemp(path.join(os.tmpdir(), "pe8-nodeexp-"));
    const port = await freePort();
    const daemon = spawnDaemon(
        "node_exporter",
        nodeExporterBinary,
        [`--web.listen-address=127.0.0.1:${port}`, "--collector.disable-defaults", "--collector.loadavg", "--collector.meminfo", "--collector.cpu"],
        process.env,
        path.join(dir, "node_exporter.log"),
    );
    const url = `http://127.0.0.1:${port}`;
    const stop = async (): Promise<void> => {
        await daemon.stop();
        await rm(dir, { recursive: true, force: true });
    };
    try {
        await daemon.waitReady(async () => (await getStatus(`${url}/metrics`)) === 200);
    } catch (err) {
        await stop();
        throw err;
    }
    return { url, daemon, stop };
}

export interface LocalServer {
    url: string;
    close(): Promise<void>;
}

/** An HTTP server on a free loopback port. */
export async function startHttpServer(handler: http.RequestListener): Promise<LocalServer> {
    const server = http.createServer(handler);
    await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve());
    });
    const addr = server.address();
    const port = typeof addr === "object" && addr ? addr.port : 0;
    return {
        url: `http://127.0.0.1:${port}`,
        close: () =>
            new Promise<void>((resolve) => {
                server.closeAllConnections();
                server.close(() => resolve());
            }),
    };
}

/** Answers Prometheus's /-/ready the way Prometheus does. */
export function startPrometheusReady(): Promise<LocalServer> {
    return startHttpServer((req, res) => {
        if (req.url === "/-/ready") {
            res.writeHead(200, { "content-type": "text/plain" });
            res.end("Prometheus Server is Ready.\n");
            return;
        }
        res.writeHead(404).end();
    });
}

/** Debian's pmie against the harness's pmcd, evaluating `rules` (pmie syntax), files in the harness directory. */
export async function startPmie(pcp: PcpHarness, rules: string): Promise<Daemon> {
    const config = path.join(pcp.dir, "pmie.conf");
    await writeFile(config, rules);
    const env = pcpEnv({
        PCP_RUN_DIR: path.join(pcp.dir, "run"),
        PCP_LOG_DIR: path.join(pcp.dir, "log"),
        PCP_TMP_DIR: path.join(pcp.dir, "tmp"),
        PMCD_PORT: String(pcp.pmcd.port),
    });
    const logFile = path.join(pcp.dir, "log", "pmie.log");
    const daemon = spawnDaemon("pmie", "pmie", ["-f", "-h", pcp.pmcd.host, "-c", config, "-l", logFile], env, path.join(pcp.dir, "log", "pmie.stdout"));
    try {
        await daemon.waitReady(async () => /pmie: PID = \d+/.test(readFileSync(logFile, "utf8")));
    } catch (err) {
        await daemon.stop();
        throw err;
    }
    return daemon;
}
