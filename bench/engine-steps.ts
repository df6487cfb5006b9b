/**
 * Where the seconds of one `pulumi up`, no-op `up` and `destroy` of the ci
 * stack go, from the engine's own events: each resource step's time (its
 * resourcePreEvent to its resOutputsEvent), when the first step began (the
 * CLI, the program and the plugins starting) and how long the command ran on
 * after its last step. A profile, run once; bench/engine.ts gives the medians.
 *
 * The event log's timestamps are whole seconds, so the file is read every
 * 10 ms while the command runs and each line is stamped when it appears.
 *
 *   node --import tsx bench/engine-steps.ts      (root; under flock /tmp/pcp-eval-heavy.lock)
 *
 * Prints a table per command, then one JSON line.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { EngineProject, engineTools, stackName } from "../test/helpers/engine";

interface EngineEvent {
    resourcePreEvent?: { metadata: { op: string; urn: string } };
    resOutputsEvent?: { metadata: { op: string; urn: string } };
    resOpFailedEvent?: { metadata: { op: string; urn: string } };
}

interface Step {
    op: string;
    /** type::name, from the URN */
    resource: string;
    startMs: number;
    ms: number;
}

interface Profile {
    command: string;
    totalMs: number;
    firstStepMs: number;
    afterLastStepMs: number;
    steps: Step[];
}

/** Runs `pulumi ARGS --event-log F`, stamping each event line when it appears in F. */
async function profiled(p: EngineProject, command: string, args: string[]): Promise<Profile> {
    const log = path.join(p.dir, `events-${command.replace(/\W+/g, "-")}.jsonl`);
    fs.rmSync(log, { force: true });
    const stamped: Array<{ at: number; event: EngineEvent }> = [];
    let seen = 0;
    const started = Date.now();
    // Whole lines only (a line being written has no newline yet); never throws, since it runs on a timer.
    const poll = (): void => {
        let text: string;
        try {
            text = fs.readFileSync(log, "utf8");
        } catch {
            return;
        }
        const now = Date.now() - started;
        const lines = text.split("\n").slice(0, -1);
        for (const line of lines.slice(seen)) {
            try {
                stamped.push({ at: now, event: JSON.parse(line) as EngineEvent });
            } catch {
                stamped.push({ at: now, event: {} });
            }
        }
        seen = lines.length;
    };
    const timer = setInterval(poll, 10);
    const result = await p.pulumiOk([...args, "--stack", stackName, "--event-log", log]);
    clearInterval(timer);
    poll();
    const name = (urn: string): string => urn.split("::").slice(-2).join("::");
    const begun = new Map<string, number>();
    const steps: Step[] = [];
    for (const { at, event } of stamped) {
        const pre = event.resourcePreEvent?.metadata;
        if (pre) begun.set(`${pre.op} ${pre.urn}`, at);
        const done = event.resOutputsEvent?.metadata ?? event.resOpFailedEvent?.metadata;
        if (done && begun.has(`${done.op} ${done.urn}`)) {
            const startMs = begun.get(`${done.op} ${done.urn}`)!;
            steps.push({ op: done.op, resource: name(done.urn), startMs, ms: at - startMs });
        }
    }
    const firstStepMs = Math.min(...steps.map((s) => s.startMs));
    const lastEnd = Math.max(...steps.map((s) => s.startMs + s.ms));
    return { command, totalMs: result.ms, firstStepMs, afterLastStepMs: result.ms - lastEnd, steps };
}

function print(profile: Profile): void {
    console.log(`\n${profile.command}: ${profile.totalMs} ms; first step at ${profile.firstStepMs} ms; ${profile.afterLastStepMs} ms after the last step`);
    for (const s of [...profile.steps].sort((a, b) => a.startMs - b.startMs)) {
        if (s.op === "same" && s.ms < 50) continue;
        console.log(`  ${String(s.startMs).padStart(6)} +${String(s.ms).padStart(6)} ms  ${s.op.padEnd(8)} ${s.resource}`);
    }
    const same = profile.steps.filter((s) => s.op === "same" && s.ms < 50).length;
    if (same > 0) console.log(`  (${same} unchanged resources under 50 ms each not listed)`);
}

async function main(): Promise<void> {
    const p = await EngineProject.create(engineTools());
    // --event-log is one of the CLI's debug flags.
    p.env.PULUMI_DEBUG_COMMANDS = "true";
    const profiles: Profile[] = [];
    try {
        await p.pulumiOk(["stack", "init", stackName]);
        profiles.push(await profiled(p, "up", ["up", "--yes"]));
        profiles.push(await profiled(p, "no-op up", ["up", "--yes", "--expect-no-changes"]));
        profiles.push(await profiled(p, "destroy", ["destroy", "--yes"]));
    } finally {
        await p.dispose();
    }
    for (const profile of profiles) print(profile);
    console.log(JSON.stringify({ bench: "engine-steps", profiles }));
}

main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
});
