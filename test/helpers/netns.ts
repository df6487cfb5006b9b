/**
 * Network namespaces for integration tests.
 *
 * Everything a test does to networking happens inside a namespace it created
 * here (`ip netns add <prefix>-<pid>-<n>`), never in the machine's own: `run`
 * always goes through `ip netns exec`, queries use `ip -n`. `destroy` ends the
 * processes started in the namespace (by PID), deletes every link in it but
 * `lo` (so no device can be handed back to the machine's namespace), then the
 * namespace itself. `destroyAllNetns` is for an `after` hook: it destroys every
 * namespace this process created and has not destroyed yet, even when a test
 * failed half way.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { isRoot } from "./tools";

export interface RunResult {
    status: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
}

export interface RunOptions {
    /** Text written to the command's stdin. */
    input?: string;
    /** Extra environment variables (merged over this process's environment). */
    env?: Record<string, string>;
    /** Run as this user (and its primary group) via setpriv, instead of root. */
    user?: string;
    /** Kill the command after this long (a guard against hangs, not an assertion). */
    timeoutMs?: number;
}

/** `ip -j link` entries, as far as the tests read them. */
export interface LinkJson {
    ifindex: number;
    ifname: string;
    flags?: string[];
    master?: string;
    ifalias?: string;
    address?: string;
    operstate?: string;
    [key: string]: unknown;
}

/** What a namespace looks like, normalised so two snapshots compare with deepStrictEqual. */
export interface NetnsSnapshot {
    links: LinkJson[];
    addrs: unknown[];
    ruleset: unknown[];
    sysctl: Record<string, string>;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const live = new Set<Netns>();
let counter = 0;

function ipCommand(args: string[], opts: RunOptions = {}): RunResult {
    const r = spawnSync("ip", args, {
        input: opts.input,
        env: { ...process.env, ...(opts.env ?? {}) },
        encoding: "utf8",
        timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        maxBuffer: 64 * 1024 * 1024,
    });
    if (r.error) throw r.error;
    return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

function mustSucceed(what: string, r: RunResult): string {
    if (r.status !== 0) {
        throw new Error(`${what} failed (status ${r.status}, signal ${r.signal}):\n${r.stderr}${r.stdout}`);
    }
    return r.stdout;
}

/** Whether this process may create network namespaces (root with `ip`). */
export function canUseNetns(): boolean {
    return isRoot();
}

export class Netns {
    readonly name: string;
    private readonly children = new Set<ChildProcess>();
    private destroyed = false;

    private constructor(name: string) {
        this.name = name;
    }

    /**
     * Creates `<prefix>-<pid>-<n>` with its loopback up. Use the prefix
     * (e.g. "pe4") so names never clash with other work on the machine.
     */
    static create(prefix: string): Netns {
        if (!/^[a-z0-9][a-z0-9-]*$/.test(prefix)) throw new Error(`bad netns prefix '${prefix}'`);
        counter += 1;
        const ns = new Netns(`${prefix}-${process.pid}-${counter}`);
        mustSucceed(`ip netns add ${ns.name}`, ipCommand(["netns", "add", ns.name]));
        live.add(ns);
        try {
            ns.ip(["link", "set", "dev", "lo", "up"]);
        } catch (e) {
            ns.destroy();
            throw e;
        }
        return ns;
    }

    private argv(cmd: string, args: string[], user?: string): string[] {
        const inner = user === undefined
            ? [cmd, ...args]
            : ["setpriv", `--reuid=${user}`, `--regid=${primaryGroup(user)}`, "--clear-groups", cmd, ...args];
        return ["netns", "exec", this.name, ...inner];
    }

    /** Runs a command inside the namespace; never throws on a non-zero exit. */
    run(cmd: string, args: string[], opts: RunOptions = {}): RunResult {
        this.assertLive();
        return ipCommand(this.argv(cmd, args, opts.user), opts);
    }

    /** Runs a command inside the namespace and returns its stdout; throws on failure. */
    runOk(cmd: string, args: string[], opts: RunOptions = {}): string {
        return mustSucceed(`[${this.name}] ${cmd} ${args.join(" ")}`, this.run(cmd, args, opts));
    }

    /** Runs a command inside the namespace without waiting for it. */
    runAsync(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
        const child = this.spawn(cmd, args, opts);
        let stdout = "";
        let stderr = "";
        child.stdout?.setEncoding("utf8").on("data", (d: string) => (stdout += d));
        child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr += d));
        if (opts.input !== undefined) child.stdin?.end(opts.input);
        else child.stdin?.end();
        return once(child, "close").then(([status, signal]) => ({
            status: status as number | null,
            signal: signal as NodeJS.Signals | null,
            stdout,
            stderr,
        }));
    }

    /** Starts a long-running process inside the namespace; `destroy` ends it by PID. */
    spawn(cmd: string, args: string[], opts: RunOptions = {}): ChildProcess {
        this.assertLive();
        const child = spawn("ip", this.argv(cmd, args, opts.user), {
            env: { ...process.env, ...(opts.env ?? {}) },
            stdio: ["pipe", "pipe", "pipe"],
        });
        this.children.add(child);
        child.on("exit", () => this.children.delete(child));
        return child;
    }

    /** `ip -n <ns> ...`: iproute2 acting on this namespace; throws on failure. */
    ip(args: string[]): string {
        this.assertLive();
        return mustSucceed(`ip -n ${this.name} ${args.join(" ")}`, ipCommand(["-n", this.name, ...args]));
    }

    links(details = false): LinkJson[] {
        return JSON.parse(this.ip(["-j", ...(details ? ["-d"] : []), "link", "show"])) as LinkJson[];
    }

    link(name: string, details = true): LinkJson | undefined {
        return this.links(details).find((l) => l.ifname === name);
    }

    sysctl(key: string): string {
        return this.runOk("cat", [`/proc/sys/${key.replace(/\./g, "/")}`]).trim();
    }

    setSysctl(key: string, value: string): void {
        this.runOk("sysctl", ["-q", "-w", `${key}=${value}`]);
    }

    /**
     * `ip -j link`, `ip -j addr`, `nft -j list ruleset` and the IPv4 forwarding
     * settings, normalised for what the kernel changes by itself over time:
     * sorted by name; carrier state (operstate, LOWER_UP, NO-CARRIER) dropped,
     * since a bridge's carrier follows its ports a moment later (linkwatch);
     * address lifetimes and the IPv6 DAD "tentative" mark dropped. Everything
     * configured (names, flags such as UP, MACs, masters, aliases, addresses) is
     * kept, and so are nftables handles: a table deleted and made again does not
     * compare equal.
     */
    snapshot(): NetnsSnapshot {
        const normLink = <T extends LinkJson>(l: T): T => {
            const { operstate: _o, ...rest } = l;
            return { ...rest, flags: (l.flags ?? []).filter((f) => f !== "LOWER_UP" && f !== "NO-CARRIER") } as unknown as T;
        };
        const links = (JSON.parse(this.ip(["-j", "link", "show"])) as LinkJson[])
            .sort((a, b) => a.ifname.localeCompare(b.ifname))
            .map(normLink);
        const addrs = (JSON.parse(this.ip(["-j", "addr", "show"])) as Array<LinkJson & { addr_info?: Array<Record<string, unknown>> }>)
            .sort((a, b) => a.ifname.localeCompare(b.ifname))
            .map((l) => ({
                ...normLink(l),
                addr_info: (l.addr_info ?? []).map((a) => {
                    const { valid_life_time: _v, preferred_life_time: _p, tentative: _t, ...rest } = a;
                    return rest;
                }),
            }));
        const ruleset = (JSON.parse(this.runOk("nft", ["-j", "list", "ruleset"])) as { nftables: unknown[] }).nftables;
        const sysctl: Record<string, string> = {};
        const keys = ["net.ipv4.ip_forward", "net.ipv4.conf.all.accept_redirects", "net.ipv4.conf.all.forwarding",
            "net.ipv4.conf.default.forwarding"];
        for (const l of links) keys.push(`net.ipv4.conf.${l.ifname}.forwarding`);
        const values = this.runOk("cat", keys.map((k) => `/proc/sys/${k.replace(/\./g, "/")}`)).trim().split("\n");
        keys.forEach((k, i) => (sysctl[k] = values[i] ?? ""));
        return { links, addrs, ruleset, sysctl };
    }

    /** Ends our processes in it, deletes its links, then the namespace. Safe to call twice. */
    destroy(): void {
        if (this.destroyed) return;
        for (const child of this.children) {
            if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
                try {
                    process.kill(child.pid, "SIGKILL");
                } catch {
                    // already gone
                }
            }
        }
        this.children.clear();
        const listed = ipCommand(["-n", this.name, "-j", "link", "show"]);
        if (listed.status === 0) {
            for (const l of JSON.parse(listed.stdout) as LinkJson[]) {
                if (l.ifname !== "lo") ipCommand(["-n", this.name, "link", "del", "dev", l.ifname]);
            }
        }
        const del = ipCommand(["netns", "del", this.name]);
        this.destroyed = true;
        live.delete(this);
        if (del.status !== 0 && !/No such file/.test(del.stderr)) {
            throw new Error(`ip netns del ${this.name} failed: ${del.stderr}`);
        }
    }

    private assertLive(): void {
        if (this.destroyed) throw new Error(`network namespace ${this.name} is already destroyed`);
    }
}

/** Destroys every namespace this process created and has not destroyed yet. */
export function destroyAllNetns(): void {
    const errors: unknown[] = [];
    for (const ns of [...live]) {
        try {
            ns.destroy();
        } catch (e) {
            errors.push(e);
        }
    }
    if (errors.length > 0) throw new AggregateError(errors, "could not destroy every test network namespace");
}

/**
 * A veth pair from `a` (end `aName`) to `b` (end `bName`): both ends are
 * created inside `a` and `bName` is moved into `b` at once, so neither end ever
 * exists in the machine's own namespace.
 */
export function vethPair(a: Netns, aName: string, b: Netns, bName: string): void {
    a.ip(["link", "add", aName, "type", "veth", "peer", "name", bName, "netns", b.name]);
}

function primaryGroup(user: string): string {
    const r = spawnSync("id", ["-g", user], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`no such user ${user}: ${r.stderr}`);
    return r.stdout.trim();
}

/**
 * A one-connection TCP listener (node) inside `ns`, bound to `host:port`. It
 * answers each connection with JSON `{"remoteAddress": ..., "received": ...}`.
 * Resolves once it is listening; `close` ends it.
 */
export interface Listener {
    child: ChildProcess;
    close(): void;
}

const LISTENER_JS = `
const net = require("node:net");
const [host, port] = [process.argv[1], Number(process.argv[2])];
const server = net.createServer((sock) => {
    let got = "";
    sock.setEncoding("utf8");
    sock.on("data", (d) => {
        got += d;
        if (got.includes("\\n")) {
            sock.end(JSON.stringify({ remoteAddress: sock.remoteAddress, received: got.trim() }) + "\\n");
        }
    });
    sock.on("error", () => {});
});
server.listen(port, host, () => process.stdout.write("listening\\n"));
`;

export async function startListener(ns: Netns, host: string, port: number): Promise<Listener> {
    const child = ns.spawn(process.execPath, ["-e", LISTENER_JS, host, String(port)]);
    child.stdin?.end();
    let out = "";
    let err = "";
    child.stderr?.setEncoding("utf8").on("data", (d: string) => (err += d));
    await new Promise<void>((resolve, reject) => {
        child.stdout?.setEncoding("utf8").on("data", (d: string) => {
            out += d;
            if (out.includes("listening")) resolve();
        });
        child.on("exit", (code) => reject(new Error(`listener on ${host}:${port} in ${ns.name} exited (${code}): ${err}`)));
    });
    return {
        child,
        close: () => {
            if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
                process.kill(child.pid, "SIGTERM");
            }
        },
    };
}

const CLIENT_JS = `
const net = require("node:net");
const [host, port, text, timeoutMs] = [process.argv[1], Number(process.argv[2]), process.argv[3], Number(process.argv[4])];
const sock = net.connect({ host, port });
let got = "";
sock.setEncoding("utf8");
sock.setTimeout(timeoutMs, () => { process.stderr.write("timed out\\n"); process.exit(3); });
sock.on("connect", () => sock.write(text + "\\n"));
sock.on("data", (d) => (got += d));
sock.on("end", () => { process.stdout.write(got); process.exit(0); });
sock.on("error", (e) => { process.stderr.write(String(e) + "\\n"); process.exit(2); });
`;

/** Connects from inside `ns` to `host:port`, sends `text`, returns the listener's JSON answer. */
export function tcpExchange(ns: Netns, host: string, port: number, text: string, timeoutMs = 10_000): { remoteAddress: string; received: string } {
    const r = ns.run(process.execPath, ["-e", CLIENT_JS, host, String(port), text, String(timeoutMs)], { timeoutMs: timeoutMs + 5_000 });
    if (r.status !== 0) throw new Error(`connecting from ${ns.name} to ${host}:${port} failed (${r.status}): ${r.stderr}`);
    return JSON.parse(r.stdout) as { remoteAddress: string; received: string };
}
