/**
 * Verifies every target of a stack, phase by phase, and builds the report.
 * Targets run one after another so the output reads top to bottom; within a
 * phase the checks run together.
 */
import { buildChecks, type CheckSettings } from "./checks";
import { formatCheckLine, summarisePhase, totalsOf, type TargetReport, type VerifyReport } from "./report";
import { runPhase } from "./runner";
import type { CheckResult, StackOutputs, VerifyPhase } from "./types";
import { verifyPhases } from "./types";

export interface VerifyOptions extends CheckSettings {
    /** Verify only these targets (names from the `targets` output). */
    only?: string[];
    /** Phases to run; all by default. */
    phases?: readonly VerifyPhase[];
    /** Receives every printed line (check lines as they finish). */
    log?: (line: string) => void;
    source?: string;
    stack?: string;
}

export class UnknownTargetError extends Error {
    constructor(unknown: string[], known: string[]) {
        super(`unknown target${unknown.length === 1 ? "" : "s"} ${unknown.join(", ")}; the stack's targets are: ${known.join(", ") || "(none)"}`);
        this.name = "UnknownTargetError";
    }
}

export function selectTargets(outputs: StackOutputs, only: readonly string[] | undefined): string[] {
    const known = Object.keys(outputs.targets);
    if (only === undefined || only.length === 0) return known;
    const unknown = only.filter((o) => !known.includes(o));
    if (unknown.length > 0) throw new UnknownTargetError(unknown, known);
    return known.filter((k) => only.includes(k));
}

/** Verifies one target; later phases make one attempt per check once a phase has failed. */
export async function verifyTarget(name: string, outputs: StackOutputs, opts: VerifyOptions = {}): Promise<TargetReport> {
    const target = outputs.targets[name];
    const grafana = opts.grafana ?? { password: outputs.grafanaAdminPassword };
    const checks = buildChecks(name, target, { ...opts, grafana });
    const phases = opts.phases ?? verifyPhases;
    const started = Date.now();
    const report: TargetReport = { target: name, kind: target.kind, status: "SKIP", ms: 0, phases: [], checks: [] };
    if (target.variant !== undefined) report.variant = target.variant;
    let failedEarlier = false;
    for (const phase of phases) {
        const run = await runPhase(name, phase, checks[phase], { retry: !failedEarlier }, (r: CheckResult) => opts.log?.(formatCheckLine(r)));
        const summary = summarisePhase(phase, run.results, run.ms);
        if (failedEarlier && summary.status === "FAIL") summary.note = "not retried: an earlier phase failed";
        report.phases.push(summary);
        report.checks.push(...run.results);
        if (summary.status === "FAIL") failedEarlier = true;
    }
    report.ms = Date.now() - started;
    report.status = report.phases.some((p) => p.status === "FAIL") ? "FAIL" : report.phases.some((p) => p.status === "PASS") ? "PASS" : "SKIP";
    return report;
}

export async function runVerify(outputs: StackOutputs, opts: VerifyOptions = {}): Promise<VerifyReport> {
    const names = selectTargets(outputs, opts.only);
    const startedAt = new Date().toISOString();
    const targets: TargetReport[] = [];
    for (const name of names) targets.push(await verifyTarget(name, outputs, opts));
    const totals = totalsOf(targets);
    const report: VerifyReport = {
        tool: "verify",
        source: opts.source ?? "outputs",
        startedAt,
        finishedAt: new Date().toISOString(),
        ok: totals.fail === 0,
        totals,
        targets,
    };
    if (opts.stack !== undefined) report.stack = opts.stack;
    return report;
}
