/**
 * What `pulumi destroy` must leave behind: nothing. Looks in the stack's state
 * directory for
 *   - pid files (`*.pid`) whose process still runs,
 *   - out-links (symlinks into /nix/store, the GC roots of the stack's builds),
 *   - the bridge, TAP devices and nftables table recorded in a net.json written
 *     by host/net.sh (`bridge.name`, the keys of `taps`, `nft.family` and
 *     `nft.table`) that still exist.
 */
import { execFile } from "node:child_process";
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import * as path from "node:path";

export type LeftoverKind = "process" | "out-link" | "bridge" | "tap" | "nft-table";

export interface Leftover {
    kind: LeftoverKind;
    /** The PID, link path, device or table name. */
    what: string;
    /** The state file that recorded it. */
    recordedIn: string;
    detail?: string;
}

export interface CommandResult {
    code: number;
    stdout: string;
    stderr: string;
}

/** Runs a host command; tests wrap it (e.g. `ip netns exec NS ...`) to look inside a namespace. */
export type CommandRunner = (file: string, args: readonly string[]) => Promise<CommandResult>;

export const runCommand: CommandRunner = (file, args) =>
    new Promise((resolve) => {
        execFile(file, [...args], { encoding: "utf8" }, (err, stdout, stderr) => {
            const code = err ? (typeof (err as NodeJS.ErrnoException).code === "number" ? Number((err as NodeJS.ErrnoException).code) : 127) : 0;
            resolve({ code, stdout, stderr: stderr || (err && code === 127 ? err.message : "") });
        });
    });

export interface LeftoverScan {
    stateDir: string;
    stateDirExists: boolean;
    leftovers: Leftover[];
    /** Things that could not be checked (each makes the leftovers phase FAIL: unknown is not clean). */
    problems: string[];
    scanned: { pidFiles: number; outLinks: number; records: number };
}

interface NetRecord {
    file: string;
    bridges: string[];
    taps: string[];
    /** "family name" of each recorded table, as `nft list tables` prints it. */
    nftTables: string[];
}

async function walk(dir: string, out: string[]): Promise<void> {
    let entries;
    try {
        entries = await readdir(dir, { withFileTypes: true });
    } catch {
        return;
    }
    for (const e of entries) {
        const p = path.join(dir, e.name);
        out.push(p);
        if (e.isDirectory()) await walk(p, out);
    }
}

/** True while `pid` is a live process (a zombie has exited). */
export function pidAlive(pid: number): boolean {
    try {
        process.kill(pid, 0);
    } catch (err) {
        return (err as NodeJS.ErrnoException).code === "EPERM";
    }
    return true;
}

async function processState(pid: number): Promise<{ alive: boolean; cmdline?: string }> {
    if (!pidAlive(pid)) return { alive: false };
    try {
        const stat = await readFile(`/proc/${pid}/stat`, "utf8");
        if (stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z") return { alive: false };
        const cmdline = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0").filter(Boolean).join(" ");
        return { alive: true, cmdline };
    } catch {
        return { alive: pidAlive(pid) };
    }
}

/**
 * The devices and table recorded in a net.json as host/net.sh writes it:
 * `bridge.name`, the keys of `taps` (an object keyed by device name) and
 * `nft.family` + `nft.table`. Anything else is not a network record.
 */
function netRecordOf(file: string, json: unknown): NetRecord | undefined {
    if (path.basename(file) !== "net.json" || typeof json !== "object" || json === null || Array.isArray(json)) return undefined;
    const st = json as { bridge?: { name?: unknown } | null; taps?: unknown; nft?: { family?: unknown; table?: unknown } | null };
    const bridges = typeof st.bridge?.name === "string" && st.bridge.name !== "" ? [st.bridge.name] : [];
    const taps = typeof st.taps === "object" && st.taps !== null && !Array.isArray(st.taps) ? Object.keys(st.taps) : [];
    const nftTables = typeof st.nft?.table === "string" && st.nft.table !== ""
        ? [`${typeof st.nft.family === "string" ? st.nft.family : "ip"} ${st.nft.table}`]
        : [];
    if (bridges.length + taps.length + nftTables.length === 0) return undefined;
    return { file, bridges, taps, nftTables };
}

/** `ip link show dev NAME`: 0 = exists, "does not exist" = gone; anything else cannot be told. */
async function linkExists(run: CommandRunner, name: string): Promise<boolean | string> {
    const r = await run("ip", ["link", "show", "dev", name]);
    if (r.code === 0) return true;
    if (/does not exist|Cannot find device/i.test(r.stderr)) return false;
    return `ip link show dev ${name} failed (exit ${r.code}): ${r.stderr.trim()}`;
}

/** Every nftables table as "family name", or an error string. */
async function nftTables(run: CommandRunner): Promise<string[] | string> {
    const r = await run("nft", ["list", "tables"]);
    if (r.code !== 0) return `nft list tables failed (exit ${r.code}): ${r.stderr.trim()}`;
    return r.stdout
        .split("\n")
        .map((l) => /^table\s+(\S+)\s+(\S+)/.exec(l.trim()))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => `${m[1]} ${m[2]}`);
}

export async function findLeftovers(stateDir: string, run: CommandRunner = runCommand): Promise<LeftoverScan> {
    const scan: LeftoverScan = { stateDir, stateDirExists: false, leftovers: [], problems: [], scanned: { pidFiles: 0, outLinks: 0, records: 0 } };
    try {
        scan.stateDirExists = (await lstat(stateDir)).isDirectory();
    } catch {
        return scan;
    }
    const files: string[] = [];
    await walk(stateDir, files);
    const records: NetRecord[] = [];
    for (const file of files) {
        let st;
        try {
            st = await lstat(file);
        } catch {
            continue;
        }
        if (st.isSymbolicLink()) {
            const dest = await readlink(file).catch(() => "");
            if (dest.startsWith("/nix/store/")) {
                scan.scanned.outLinks += 1;
                scan.leftovers.push({ kind: "out-link", what: file, recordedIn: file, detail: `-> ${dest}` });
            }
            continue;
        }
        if (!st.isFile()) continue;
        if (file.endsWith(".pid")) {
            scan.scanned.pidFiles += 1;
            const text = (await readFile(file, "utf8").catch(() => "")).trim();
            const pid = Number.parseInt(text, 10);
            if (!Number.isInteger(pid) || pid <= 1) continue;
            const state = await processState(pid);
            if (state.alive) scan.leftovers.push({ kind: "process", what: String(pid), recordedIn: file, detail: state.cmdline });
            continue;
        }
        if (file.endsWith(".json") && st.size < 1024 * 1024) {
            let json: unknown;
            try {
                json = JSON.parse(await readFile(file, "utf8"));
            } catch {
                continue;
            }
            const rec = netRecordOf(file, json);
            if (rec) records.push(rec);
        }
    }
    scan.scanned.records = records.length;
    let tables: string[] | string | undefined;
    for (const rec of records) {
        for (const [kind, names] of [["bridge", rec.bridges], ["tap", rec.taps]] as const) {
            for (const name of names) {
                const exists = await linkExists(run, name);
                if (typeof exists === "string") scan.problems.push(exists);
                else if (exists) scan.leftovers.push({ kind, what: name, recordedIn: rec.file });
            }
        }
        if (rec.nftTables.length > 0) {
            tables ??= await nftTables(run);
            if (typeof tables === "string") {
                scan.problems.push(tables);
                continue;
            }
            for (const table of rec.nftTables) {
                if (tables.includes(table)) scan.leftovers.push({ kind: "nft-table", what: table, recordedIn: rec.file });
            }
        }
    }
    return scan;
}

export function describeLeftover(l: Leftover): string {
    switch (l.kind) {
        case "process":
            return `process ${l.what} still runs (${l.detail ?? "?"}), from ${l.recordedIn}`;
        case "out-link":
            return `out-link ${l.what} ${l.detail ?? ""} still exists`;
        case "bridge":
        case "tap":
            return `${l.kind} ${l.what} still exists, recorded in ${l.recordedIn}`;
        case "nft-table":
            return `nftables table ${l.what} still exists, recorded in ${l.recordedIn}`;
    }
}
