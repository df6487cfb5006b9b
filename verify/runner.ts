/**
 * Runs checks phase by phase. The checks of one phase run together, each
 * retried until it passes or its time budget (from nix/constants.json, or an
 * override) is spent; a check's milliseconds are its own wall time.
 */
import type { CheckOutcome, CheckResult, VerifyPhase } from "./types";
import { fail } from "./types";

export interface AttemptContext {
    /** Epoch ms after which the check must give up. */
    deadline: number;
    remainingMs(): number;
}

export interface CheckSpec {
    phase: VerifyPhase;
    name: string;
    /** Time budget for the check, in milliseconds. */
    timeoutMs: number;
    /** When set, the check is not run and is reported as SKIP with this reason. */
    skip?: string;
    /** One attempt. A FAIL (or a throw) is retried until the budget ends, unless `selfTimed`. */
    attempt?: (ctx: AttemptContext) => Promise<CheckOutcome>;
    /** The attempt polls by itself until its deadline (e.g. waiting for a pmie alert); run it once. */
    selfTimed?: boolean;
}

/** Pause between attempts of a failing check (a poll interval, not a timeout). */
export const retryDelayMs = 1000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

export interface RunCheckOptions {
    /** When false, a failing check is not retried (an earlier phase already failed; do not wait again). */
    retry: boolean;
}

export async function runCheck(target: string, spec: CheckSpec, opts: RunCheckOptions): Promise<CheckResult> {
    const base = { target, phase: spec.phase, name: spec.name };
    if (spec.skip !== undefined || spec.attempt === undefined) {
        return { ...base, status: "SKIP", message: spec.skip ?? "nothing to check", ms: 0, attempts: 0 };
    }
    const started = Date.now();
    const deadline = started + spec.timeoutMs;
    const ctx: AttemptContext = { deadline, remainingMs: () => Math.max(1, deadline - Date.now()) };
    let attempts = 0;
    let outcome: CheckOutcome;
    for (;;) {
        attempts += 1;
        try {
            outcome = await spec.attempt(ctx);
        } catch (err) {
            outcome = fail((err as Error).message);
        }
        if (outcome.status !== "FAIL" || spec.selfTimed || !opts.retry) break;
        const left = deadline - Date.now();
        if (left <= retryDelayMs) break;
        await sleep(retryDelayMs);
    }
    const ms = Date.now() - started;
    const message =
        outcome.status === "FAIL" && attempts > 1 ? `${outcome.message} (still failing after ${attempts} attempts in ${ms} ms)` : outcome.message;
    return { ...base, status: outcome.status, message, ms, attempts };
}

export interface PhaseRun {
    phase: VerifyPhase;
    ms: number;
    results: CheckResult[];
}

/** Runs a phase's checks concurrently; results come back in the order of `specs`. */
export async function runPhase(
    target: string,
    phase: VerifyPhase,
    specs: CheckSpec[],
    opts: RunCheckOptions,
    onResult?: (r: CheckResult) => void,
): Promise<PhaseRun> {
    const started = Date.now();
    const pending = specs.map((s) => runCheck(target, s, opts));
    const results: CheckResult[] = [];
    for (const p of pending) {
        const r = await p;
        results.push(r);
        onResult?.(r);
    }
    return { phase, ms: Date.now() - started, results };
}
