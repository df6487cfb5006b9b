/**
 * The lifecycle run: `pulumi up`, verify every target (services, metrics,
 * consoles, parity, pmie), `pulumi destroy`, then the leftovers check. Each
 * phase is timed. A failing target does not stop the run: every target is
 * verified and destroy always runs (also after a failed up), so the report at
 * the end covers all of them.
 *
 * Up and destroy act on the whole stack (a Pulumi stack is the unit the engine
 * updates); `--only` narrows which targets are verified and reported.
 */
import { stateDirOf } from "../components/config";
import { describeLeftover, findLeftovers, type LeftoverScan } from "./leftovers";
import { describeAutomationError, parseStackOutputs, projectDir } from "./outputs";
import { combineStatus, formatMs, type PhaseSummary, summarisePhase, type TargetReport, totalsOf, type VerifyReport } from "./report";
import type { CheckResult, StackOutputs, StackPhase } from "./types";
import { fail, pass, verifyPhases } from "./types";
import { selectTargets, verifyTarget, type VerifyOptions } from "./verify";

/** What the lifecycle needs from a Pulumi stack; `pulumiStack` gives the real one (Automation API). */
export interface LifecycleStack {
    name: string;
    up(onOutput: (text: string) => void): Promise<void>;
    /** Raw outputs, in either the Automation API's or the CLI's JSON shape. */
    outputs(): Promise<unknown>;
    destroy(onOutput: (text: string) => void): Promise<void>;
    /** Absolute state directory of the stack (where pid files, out-links and network records live). */
    stateDir(): Promise<string>;
}

export interface LifecycleOptions extends Omit<VerifyOptions, "only" | "phases" | "log" | "source" | "stack"> {
    only?: string[];
    log?: (line: string) => void;
    /** Engine output (up/destroy progress); defaults to `log` line by line. */
    engineOutput?: (text: string) => void;
    /** Replaceable for tests of the lifecycle's own logic. */
    verify?: typeof verifyTarget;
    leftovers?: (stateDir: string) => Promise<LeftoverScan>;
}

/** Name of the pseudo-target used when up failed before any target was known. */
export const stackTarget = "(stack)";

interface StackPhaseRun {
    summary: PhaseSummary;
    checks: CheckResult[];
}

/** The engine's own diagnostic is more useful than the CLI's "code: 255" header. */
const firstLine = describeAutomationError;

async function timed(phase: StackPhase, name: string, fn: () => Promise<string>): Promise<StackPhaseRun> {
    const started = Date.now();
    let check: CheckResult;
    try {
        const message = await fn();
        check = { target: stackTarget, phase, name, ...pass(message), ms: Date.now() - started, attempts: 1 };
    } catch (err) {
        check = { target: stackTarget, phase, name, ...fail(firstLine(err)), ms: Date.now() - started, attempts: 1 };
    }
    const summary = summarisePhase(phase, [check], check.ms);
    summary.note = "stack-wide";
    return { summary, checks: [check] };
}

function leftoverChecks(scan: LeftoverScan, ms: number): CheckResult[] {
    const base = { target: stackTarget, phase: "leftovers" as const, ms, attempts: 1 };
    if (!scan.stateDirExists) {
        return [{ ...base, name: "state directory", ...pass(`${scan.stateDir} does not exist: nothing can be left`) }];
    }
    const byKind = (kinds: string[]): string[] => scan.leftovers.filter((l) => kinds.includes(l.kind)).map(describeLeftover);
    const mk = (name: string, found: string[], clean: string): CheckResult =>
        found.length > 0 ? { ...base, name, ...fail(`${found.join("; ")} (state dir ${scan.stateDir})`) } : { ...base, name, ...pass(clean) };
    const checks = [
        mk("no process from pid files", byKind(["process"]), `${scan.scanned.pidFiles} pid file(s), no process left`),
        mk("no out-links", byKind(["out-link"]), "no out-link into /nix/store left"),
        mk("no bridge, TAP or nft table", byKind(["bridge", "tap", "nft-table"]), `${scan.scanned.records} network record(s), nothing left`),
    ];
    if (scan.problems.length > 0) checks.push({ ...base, name: "leftovers could be checked", ...fail(scan.problems.join("; ")) });
    return checks;
}

/** Lines of engine output, passed on without the trailing newline the engine adds. */
function lineLogger(log: (line: string) => void, prefix: string): (text: string) => void {
    return (text) => {
        for (const line of text.replace(/\n$/, "").split("\n")) log(`${prefix}${line}`);
    };
}

export async function runLifecycle(stack: LifecycleStack, opts: LifecycleOptions = {}): Promise<VerifyReport> {
    const log = opts.log ?? (() => undefined);
    const verify = opts.verify ?? verifyTarget;
    const leftovers = opts.leftovers ?? ((dir: string) => findLeftovers(dir));
    const startedAt = new Date().toISOString();

    log(`== up: pulumi up --stack ${stack.name}`);
    const up = await timed("up", "pulumi up", async () => {
        await stack.up(opts.engineOutput ?? lineLogger(log, "   up | "));
        return `stack ${stack.name} is up`;
    });
    log(`== up: ${up.summary.status} in ${formatMs(up.summary.ms)}${up.summary.status === "FAIL" ? `: ${up.checks[0].message}` : ""}`);

    // Outputs: after a failed up there may still be some (a partial update); use them if they parse.
    let outputs: StackOutputs | undefined;
    let outputsProblem: string | undefined;
    try {
        outputs = parseStackOutputs(await stack.outputs(), `stack ${stack.name}`);
    } catch (err) {
        outputsProblem = (err as Error).message;
    }

    const targetReports: TargetReport[] = [];
    let names: string[] = [];
    let selectionProblem: string | undefined;
    if (outputs !== undefined) {
        try {
            names = selectTargets(outputs, opts.only);
        } catch (err) {
            selectionProblem = (err as Error).message;
        }
    }
    if (up.summary.status === "PASS" && outputs !== undefined && selectionProblem === undefined) {
        for (const name of names) {
            log(`== verify ${name}`);
            try {
                targetReports.push(
                    await verify(name, outputs, {
                        timeoutsSeconds: opts.timeoutsSeconds,
                        pmie: opts.pmie,
                        shellFor: opts.shellFor,
                        log,
                    }),
                );
            } catch (err) {
                // verify does not throw for failing checks; this is a bug or an environment failure: record it, go on.
                const check: CheckResult = { target: name, phase: "services", name: "verify", ...fail(firstLine(err)), ms: 0, attempts: 1 };
                targetReports.push({ target: name, status: "FAIL", ms: 0, phases: [summarisePhase("services", [check], 0)], checks: [check] });
            }
        }
    } else {
        const why =
            up.summary.status === "FAIL"
                ? `not verified: pulumi up failed (${up.checks[0].message})`
                : selectionProblem ?? `not verified: ${outputsProblem ?? "no outputs"}`;
        const skipped = names.length > 0 ? names : opts.only && opts.only.length > 0 ? opts.only : [stackTarget];
        for (const name of skipped) {
            const check: CheckResult = { target: name, phase: "services", name: "verify", ...fail(why), ms: 0, attempts: 0 };
            targetReports.push({ target: name, status: "FAIL", ms: 0, phases: [summarisePhase("services", [check], 0)], checks: [check] });
            log(`FAIL ${name}: ${why}`);
        }
    }

    log(`== destroy: pulumi destroy --stack ${stack.name}`);
    const destroy = await timed("destroy", "pulumi destroy", async () => {
        await stack.destroy(opts.engineOutput ?? lineLogger(log, "   destroy | "));
        return `stack ${stack.name} destroyed`;
    });
    log(`== destroy: ${destroy.summary.status} in ${formatMs(destroy.summary.ms)}${destroy.summary.status === "FAIL" ? `: ${destroy.checks[0].message}` : ""}`);

    log("== leftovers");
    const leftStarted = Date.now();
    let leftChecks: CheckResult[];
    try {
        const stateDir = await stack.stateDir();
        const scan = await leftovers(stateDir);
        leftChecks = leftoverChecks(scan, Date.now() - leftStarted);
    } catch (err) {
        leftChecks = [{ target: stackTarget, phase: "leftovers", name: "leftovers", ...fail(firstLine(err)), ms: Date.now() - leftStarted, attempts: 1 }];
    }
    const leftMs = Date.now() - leftStarted;
    for (const c of leftChecks) log(`${c.status.padEnd(4)} ${`${c.ms} ms`.padStart(9)}  leftovers  ${c.name}: ${c.message}`);
    const left: StackPhaseRun = { summary: { ...summarisePhase("leftovers", leftChecks, leftMs), note: "stack-wide" }, checks: leftChecks };

    // Each target's table: up, its verify phases, destroy, leftovers.
    for (const t of targetReports) {
        const verifyRows = t.phases.filter((p) => (verifyPhases as readonly string[]).includes(p.phase));
        t.phases = [up.summary, ...verifyRows, destroy.summary, left.summary];
        t.status = combineStatus(t.phases.map((p) => p.status));
        t.ms = t.phases.reduce((a, p) => a + p.ms, 0);
    }

    const stackChecks = [...up.checks, ...destroy.checks, ...left.checks];
    const targetTotals = totalsOf(targetReports);
    const count = (s: string): number => stackChecks.filter((c) => c.status === s).length;
    const totals = { pass: targetTotals.pass + count("PASS"), fail: targetTotals.fail + count("FAIL"), skip: targetTotals.skip + count("SKIP") };
    return {
        tool: "lifecycle",
        source: `pulumi stack ${stack.name}`,
        stack: stack.name,
        startedAt,
        finishedAt: new Date().toISOString(),
        ok: totals.fail === 0,
        totals,
        targets: targetReports,
        stackPhases: [up.summary, destroy.summary, left.summary],
        stackChecks,
    };
}

/**
 * The real stack: Pulumi's Automation API over the project directory (the
 * Pulumi CLI must be on PATH). The state directory is the stack's stateDir
 * output, kept from the outputs read after up (destroy empties them); when up
 * failed before the program exported anything, the program's own rule
 * (config.ts stateDirOf) over the stack's config gives it.
 */
export async function pulumiStack(stackName: string, workDir: string = projectDir): Promise<LifecycleStack> {
    const { LocalWorkspace } = await import("@pulumi/pulumi/automation");
    let stack: Awaited<ReturnType<typeof LocalWorkspace.selectStack>>;
    try {
        stack = await LocalWorkspace.selectStack({ stackName, workDir });
    } catch (err) {
        throw new Error(`cannot select stack "${stackName}" in ${workDir} with the Pulumi Automation API: ${describeAutomationError(err)}`);
    }
    let stateDirOutput: string | undefined;
    return {
        name: stackName,
        async up(onOutput) {
            await stack.up({ onOutput });
        },
        async outputs() {
            const outputs = await stack.outputs();
            const exported = outputs.stateDir?.value;
            if (typeof exported === "string" && exported !== "") stateDirOutput = exported;
            return outputs;
        },
        async destroy(onOutput) {
            await stack.destroy({ onOutput });
        },
        async stateDir() {
            if (stateDirOutput !== undefined) return stateDirOutput;
            let configured = "";
            try {
                configured = (await stack.getConfig("pcp-eval:stateDir")).value;
            } catch {
                configured = "";
            }
            return stateDirOf(configured, stackName, workDir);
        },
    };
}
