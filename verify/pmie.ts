/**
 * The pmie test on an eval VM: stress-ng runs at Nice=19, busy then idle, and
 * pmie's cpu_elevated rule logs to alerts.log while it is busy; pmie also
 * touches a heartbeat file. Checked over SSH by reading the two files.
 */
import { constants } from "../components/constants";
import type { RemoteShell } from "./remote";
import type { CheckOutcome } from "./types";
import { fail, pass } from "./types";
import type { AttemptContext } from "./runner";

export interface PmieSettings {
    alertsLog: string;
    heartbeatFile: string;
    rule: string;
    heartbeatSeconds: number;
    /** One stress cycle: busy then idle. */
    cycleSeconds: number;
}

export function defaultPmieSettings(): PmieSettings {
    const p = constants.pmie;
    return {
        alertsLog: p.alertsLog,
        heartbeatFile: p.heartbeatFile,
        rule: p.rule,
        heartbeatSeconds: p.heartbeatSeconds,
        cycleSeconds: p.busySeconds + p.idleSeconds,
    };
}

/**
 * Time the alert check may take: one full stress cycle (the busy phase may have
 * just ended when we start) plus one heartbeat period for pmie's own sampling.
 */
export function alertBudgetSeconds(s: PmieSettings): number {
    return s.cycleSeconds + s.heartbeatSeconds;
}

/** A heartbeat is fresh when it is at most two periods old (one missed beat is tolerated). */
export function heartbeatFreshLimitSeconds(s: PmieSettings): number {
    return 2 * s.heartbeatSeconds;
}

/** Prints "now=<epoch> alerts=<count|missing> heartbeat=<mtime epoch|missing>"; $1 log, $2 heartbeat, $3 rule. */
export const probeScript = [
    "set -u",
    'now=$(date +%s)',
    'if [ -r "$1" ]; then alerts=$(grep -c -F -- "$3" "$1" || true); else alerts=missing; fi',
    'if [ -e "$2" ]; then hb=$(stat -c %Y -- "$2"); else hb=missing; fi',
    'echo "now=$now alerts=$alerts heartbeat=$hb"',
    "",
].join("\n");

export interface PmieProbe {
    now: number;
    /** cpu_elevated lines in alerts.log; undefined when the log is absent or unreadable. */
    alerts?: number;
    /** Heartbeat file mtime (epoch seconds); undefined when absent. */
    heartbeat?: number;
}

export function parseProbe(stdout: string): PmieProbe {
    const m = /now=(\d+) alerts=(\d+|missing) heartbeat=(\d+|missing)/.exec(stdout);
    if (!m) throw new Error(`unexpected probe output: ${JSON.stringify(stdout.trim().slice(0, 120))}`);
    const probe: PmieProbe = { now: Number(m[1]) };
    if (m[2] !== "missing") probe.alerts = Number(m[2]);
    if (m[3] !== "missing") probe.heartbeat = Number(m[3]);
    return probe;
}

export async function probe(shell: RemoteShell, s: PmieSettings, timeoutMs: number): Promise<PmieProbe> {
    const res = await shell.run(probeScript, [s.alertsLog, s.heartbeatFile, s.rule], timeoutMs);
    if (res.code !== 0) {
        throw new Error(`${shell.where}: probe exited ${res.code}: ${res.stderr.trim().split("\n").slice(-1)[0] ?? ""}`);
    }
    return parseProbe(res.stdout);
}

/** One attempt: the heartbeat file exists and is fresh. */
export async function checkHeartbeat(shell: RemoteShell, s: PmieSettings, ctx: AttemptContext): Promise<CheckOutcome> {
    const p = await probe(shell, s, ctx.remainingMs());
    if (p.heartbeat === undefined) return fail(`heartbeat file ${s.heartbeatFile} is missing (${shell.where})`);
    const age = p.now - p.heartbeat;
    const limit = heartbeatFreshLimitSeconds(s);
    if (age > limit) {
        return fail(`heartbeat file ${s.heartbeatFile} is ${age} s old, more than ${limit} s (${shell.where}): is pmie running?`);
    }
    return pass(`heartbeat ${s.heartbeatFile} ${Math.max(0, age)} s old (limit ${limit} s)`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/**
 * Self-timed: counts the rule's lines, then polls (once per heartbeat period)
 * until alerts.log has gained a line or the deadline passes.
 */
export async function checkAlertGrows(shell: RemoteShell, s: PmieSettings, ctx: AttemptContext): Promise<CheckOutcome> {
    const pollMs = s.heartbeatSeconds * 1000;
    let first: PmieProbe | undefined;
    let lastError = "";
    while (first === undefined) {
        try {
            first = await probe(shell, s, ctx.remainingMs());
        } catch (err) {
            lastError = (err as Error).message;
            if (ctx.deadline - Date.now() <= pollMs) return fail(`cannot read ${s.alertsLog}: ${lastError}`);
            await sleep(pollMs);
        }
    }
    const startCount = first.alerts ?? 0;
    const startedAt = Date.now();
    for (;;) {
        if (ctx.deadline - Date.now() <= 0) break;
        await sleep(Math.min(pollMs, ctx.deadline - Date.now()));
        let p: PmieProbe;
        try {
            p = await probe(shell, s, ctx.remainingMs());
        } catch (err) {
            lastError = (err as Error).message;
            continue;
        }
        if (p.alerts !== undefined && p.alerts > startCount) {
            const gained = p.alerts - startCount;
            return pass(`${s.alertsLog} gained ${gained} ${s.rule} line${gained === 1 ? "" : "s"} in ${Math.round((Date.now() - startedAt) / 1000)} s`);
        }
    }
    const seen = first.alerts === undefined ? `${s.alertsLog} does not exist` : `it still has ${startCount} ${s.rule} line(s)`;
    return fail(
        `no new ${s.rule} line in ${s.alertsLog} within one stress cycle (${alertBudgetSeconds(s)} s) on ${shell.where}: ${seen}` +
            (lastError ? `; last error: ${lastError}` : ""),
    );
}
