/**
 * Reporting: one line per check (status, milliseconds, name, message), a
 * summary table per target (one row per phase with its result, counts and
 * time), and the JSON report.
 */
import { mkdir, writeFile } from "node:fs/promises";
import * as path from "node:path";
import type { CheckResult, CheckStatus, Target, VerifyPhase } from "./types";

export interface PhaseSummary {
    phase: string;
    status: CheckStatus;
    ms: number;
    pass: number;
    fail: number;
    skip: number;
    /** For lifecycle rows that are not made of checks (up, destroy, leftovers): what happened. */
    note?: string;
}

export interface TargetReport {
    target: string;
    kind?: Target["kind"];
    variant?: Target["variant"];
    status: CheckStatus;
    ms: number;
    phases: PhaseSummary[];
    checks: CheckResult[];
}

export interface VerifyReport {
    tool: "verify" | "lifecycle";
    source: string;
    stack?: string;
    startedAt: string;
    finishedAt: string;
    ok: boolean;
    totals: { pass: number; fail: number; skip: number };
    targets: TargetReport[];
    /** Lifecycle only: up, destroy and leftovers, run once for the stack. */
    stackPhases?: PhaseSummary[];
    stackChecks?: CheckResult[];
}

/** FAIL beats PASS beats SKIP. */
export function combineStatus(statuses: readonly CheckStatus[]): CheckStatus {
    if (statuses.includes("FAIL")) return "FAIL";
    if (statuses.includes("PASS")) return "PASS";
    return "SKIP";
}

export function summarisePhase(phase: VerifyPhase | string, results: readonly CheckResult[], ms: number): PhaseSummary {
    const count = (s: CheckStatus): number => results.filter((r) => r.status === s).length;
    return { phase, status: combineStatus(results.map((r) => r.status)), ms, pass: count("PASS"), fail: count("FAIL"), skip: count("SKIP") };
}

export function formatMs(ms: number): string {
    if (ms < 1000) return `${ms} ms`;
    if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
    const m = Math.floor(ms / 60_000);
    const s = Math.round((ms % 60_000) / 1000);
    return `${m} min ${s} s`;
}

export function formatCheckLine(r: CheckResult): string {
    return `${r.status.padEnd(4)} ${`${r.ms} ms`.padStart(9)}  ${r.target}/${r.phase}  ${r.name}: ${r.message}`;
}

function pad(cells: string[], widths: number[], rightAlign: boolean[]): string {
    return cells.map((c, i) => (rightAlign[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ").trimEnd();
}

/** A framed table: the target's phases with result, pass/fail/skip counts and time, then the total. */
export function formatSummaryTable(report: TargetReport): string {
    const header = ["phase", "result", "pass", "fail", "skip", "time", "note"];
    const right = [false, false, true, true, true, true, false];
    const rows = report.phases.map((p) => [p.phase, p.status, String(p.pass), String(p.fail), String(p.skip), formatMs(p.ms), p.note ?? ""]);
    const totals = report.phases.reduce((a, p) => ({ pass: a.pass + p.pass, fail: a.fail + p.fail, skip: a.skip + p.skip }), { pass: 0, fail: 0, skip: 0 });
    const totalRow = ["total", report.status, String(totals.pass), String(totals.fail), String(totals.skip), formatMs(report.ms), ""];
    const all = [header, ...rows, totalRow];
    const widths = header.map((_, i) => Math.max(...all.map((r) => r[i].length)));
    const rule = "-".repeat(pad(widths.map((w) => "-".repeat(w)), widths, right).length);
    const describe = [report.kind, report.variant].filter((x) => x !== undefined).join(" ");
    return [
        `=== ${report.target}${describe ? ` (${describe})` : ""}: ${report.status} ===`,
        pad(header, widths, right),
        rule,
        ...rows.map((r) => pad(r, widths, right)),
        rule,
        pad(totalRow, widths, right),
    ].join("\n");
}

/** One line per target for the end of a run. */
export function formatOverall(report: VerifyReport): string {
    const failed = report.targets.filter((t) => t.status === "FAIL").map((t) => t.target);
    for (const p of report.stackPhases ?? []) if (p.status === "FAIL") failed.push(p.phase);
    const { pass, fail, skip } = report.totals;
    const head = `${report.tool}: ${report.ok ? "PASS" : "FAIL"}, ${report.targets.length} target(s), ${pass} passed, ${fail} failed, ${skip} skipped`;
    return failed.length > 0 ? `${head}; failed: ${failed.join(", ")}` : head;
}

export function totalsOf(targets: readonly TargetReport[]): { pass: number; fail: number; skip: number } {
    const all = targets.flatMap((t) => t.checks);
    return {
        pass: all.filter((c) => c.status === "PASS").length,
        fail: all.filter((c) => c.status === "FAIL").length,
        skip: all.filter((c) => c.status === "SKIP").length,
    };
}

export async function writeJsonReport(file: string, report: VerifyReport): Promise<void> {
    await mkdir(path.dirname(path.resolve(file)), { recursive: true });
    await writeFile(file, `${JSON.stringify(report, null, 2)}\n`, "utf8");
}

/**
 * Prints the per-target tables and the overall line, writes the JSON report
 * when asked, and returns the exit status (0 all passed, 1 any FAIL).
 */
export async function printReport(report: VerifyReport, jsonFile: string | undefined): Promise<number> {
    process.stdout.write("\n");
    for (const t of report.targets) process.stdout.write(`${formatSummaryTable(t)}\n\n`);
    process.stdout.write(`${formatOverall(report)}\n`);
    if (jsonFile !== undefined) {
        await writeJsonReport(jsonFile, report);
        process.stdout.write(`report written to ${jsonFile}\n`);
    }
    return report.ok ? 0 : 1;
}
