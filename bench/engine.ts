/**
 * Wall time of the real Pulumi engine on the ci stack (the bridge and two
 * fixture VMs, inside a network namespace of its own; see
 * test/helpers/engine.ts), beside the floor: the same CLI and language host
 * running an empty TypeScript program with one output, in the same run.
 *
 *   up          `pulumi up --yes` from an empty stack
 *   noopUp      a second `pulumi up --yes` (nothing to do)
 *   destroy     `pulumi destroy --yes`
 *   vmReady     the fixture VMs' boot-to-ready in that same up (vm.sh's
 *               readyMs, read from the state): the longest one, since the
 *               VMs boot in parallel
 *   vmStop      the VMs' graceful shutdown in that destroy (vm.sh's stopMs,
 *               through PCP_EVAL_VM_STOP_LOG): the longest one
 *   overhead    up - vmReady: everything that is not a VM booting
 *   floorNoop   the empty program's no-op `pulumi up --yes`
 *   floorSkip   the same with --skip-preview
 *   dynNoop     the empty program plus one do-nothing Node.js dynamic resource,
 *               no-op `pulumi up --yes`: what the host resources cost when they
 *               were dynamic resources (a second Node.js process per engine
 *               pass), before pcp-eval's Go provider plugin replaced them; kept
 *               for comparison beside the goals, which keep the floor
 *
 * Goals (issue 17), printed with their margins:
 *   no-op up <= floorNoop + 0.5 s
 *   up - vmReady - floorNoop <= 1.0 s
 *   destroy <= 1.5 s + vmStop
 *
 *   node --import tsx bench/engine.ts [--runs N] [--compile-cache] [--type-check]
 *       --runs N          default 3; root, like the e2e test; under flock /tmp/pcp-eval-heavy.lock
 *       --type-check      PULUMI_NODEJS_TRANSPILE_ONLY unset, as in a shell that does not set it:
 *                         ts-node then type-checks the program on every run (the floor's too)
 *       --compile-cache   every pulumi command (the floor's too) runs with NODE_COMPILE_CACHE
 *                         set, as scripts/up.sh and the dev shell run it: the program and the
 *                         dynamic provider plugin compile from Node's cache (run 1 fills it)
 *
 * Prints one line per run, then the medians and the goals, then one JSON line.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { EngineProject, engineTools, stackName } from "../test/helpers/engine";
import { median as exactMedian } from "./stats";

/** Whole milliseconds. */
const median = (values: number[]): number => Math.round(exactMedian(values));

interface Sample {
    up: number;
    noopUp: number;
    destroy: number;
    vmReady: number;
    vmStop: number;
    overhead: number;
    floorNoop: number;
    floorSkip: number;
    dynNoop: number;
}

const floorStack = "floor";

/** The floor's program: one output. */
const emptyProgram = 'export const floor = "floor";\n';
/** The same with one dynamic resource whose provider does nothing (no change on diff). */
const dynamicProgram = `import * as pulumi from "@pulumi/pulumi";
const provider: pulumi.dynamic.ResourceProvider = {
    async create() { return { id: "floor", outs: {} }; },
    async diff() { return { changes: false }; },
};
// A subclass: the SDK's class is abstract (ts-node refuses \`new\` of it when it type-checks, --type-check).
class Floor extends pulumi.dynamic.Resource {}
new Floor(provider, "floor", {});
export const floor = "floor";
`;

/** A floor project (an empty TypeScript program, or the same with one dynamic resource) next to the project copy. */
function writeFloorProject(p: EngineProject, name: string, program: string): string {
    const dir = path.join(p.dir, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), "name: floor\nruntime:\n  name: nodejs\n  options:\n    typescript: true\n");
    fs.writeFileSync(path.join(dir, "index.ts"), program);
    fs.copyFileSync(path.join(p.projectDir, "package.json"), path.join(dir, "package.json"));
    fs.writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions: { target: "ES2022", module: "commonjs", moduleResolution: "node", strict: true }, include: ["index.ts"] }));
    fs.symlinkSync(path.join(p.projectDir, "node_modules"), path.join(dir, "node_modules"));
    return dir;
}

/** The floor's no-op up, with and without preview (its stack is created and removed here). */
async function floorRun(p: EngineProject, dir: string): Promise<{ floorNoop: number; floorSkip: number }> {
    // A later --cwd wins over the helper's own (the project copy).
    const at = (args: string[]): string[] => [...args, "--cwd", dir, "--stack", floorStack];
    await p.pulumiOk(at(["stack", "init"]));
    await p.pulumiOk(at(["up", "--yes"]));
    const noop = await p.pulumiOk(at(["up", "--yes", "--expect-no-changes"]));
    const skip = await p.pulumiOk(at(["up", "--yes", "--skip-preview", "--expect-no-changes"]));
    await p.pulumiOk(at(["destroy", "--yes"]));
    await p.pulumiOk(at(["stack", "rm", "--yes"]));
    return { floorNoop: noop.ms, floorSkip: skip.ms };
}

function parseRuns(argv: string[]): number {
    const unknown = argv.filter((a, k) => a !== "--runs" && a !== "--compile-cache" && a !== "--type-check" && argv[k - 1] !== "--runs");
    if (unknown.length > 0) {
        console.error(`bench/engine.ts: unknown argument '${unknown[0]}'; use --runs N, --compile-cache and --type-check`);
        process.exit(2);
    }
    const i = argv.indexOf("--runs");
    if (i < 0) return 3;
    const n = Number(argv[i + 1]);
    if (!Number.isInteger(n) || n < 1) {
        console.error(`bench/engine.ts: --runs needs a positive whole number, got '${argv[i + 1] ?? ""}'`);
        process.exit(2);
    }
    return n;
}

async function oneRun(p: EngineProject, floorDir: string, dynamicDir: string, stopLog: string): Promise<Sample> {
    const floor = await floorRun(p, floorDir);
    const dynNoop = (await floorRun(p, dynamicDir)).floorNoop;
    fs.rmSync(stopLog, { force: true });
    p.restoreStackConfig(); // the previous run's `stack rm` deleted it
    await p.pulumiOk(["stack", "init", stackName]);
    const up = await p.pulumiOk(["up", "--yes", "--stack", stackName]);
    const state = await p.exportState();
    const ready = (state.deployment?.resources ?? [])
        .filter((r) => r.type.endsWith(":MicroVmProcess"))
        .map((r) => Number((r as { outputs?: { readyMs?: number } }).outputs?.readyMs ?? NaN));
    if (ready.length === 0 || ready.some((x) => !Number.isFinite(x))) throw new Error("no readyMs in the state's MicroVmProcess resources");
    const noop = await p.pulumiOk(["up", "--yes", "--expect-no-changes", "--stack", stackName]);
    const destroy = await p.pulumiOk(["destroy", "--yes", "--stack", stackName]);
    await p.pulumiOk(["stack", "rm", "--yes", stackName]);
    const stops = fs.existsSync(stopLog)
        ? fs
              .readFileSync(stopLog, "utf8")
              .split("\n")
              .filter((l) => l.trim() !== "")
              .map((l) => (JSON.parse(l) as { stopMs: number }).stopMs)
        : [];
    if (stops.length !== ready.length) throw new Error(`expected ${ready.length} VM stops in ${stopLog}, found ${stops.length}`);
    const vmReady = Math.max(...ready);
    return { up: up.ms, noopUp: noop.ms, destroy: destroy.ms, vmReady, vmStop: Math.max(...stops), overhead: up.ms - vmReady, ...floor, dynNoop };
}

async function main(): Promise<void> {
    const runs = parseRuns(process.argv.slice(2));
    const compileCache = process.argv.includes("--compile-cache");
    const tools = engineTools();
    const p = await EngineProject.create(tools);
    const samples: Sample[] = [];
    const stopLog = path.join(p.dir, "vm-stops.jsonl");
    // The CLI passes its environment to the language host and the providers, so vm.sh sees it.
    p.env.PCP_EVAL_VM_STOP_LOG = stopLog;
    if (compileCache) p.env.NODE_COMPILE_CACHE = path.join(p.dir, "node-compile-cache");
    const typeCheck = process.argv.includes("--type-check");
    if (typeCheck) delete p.env.PULUMI_NODEJS_TRANSPILE_ONLY;
    try {
        const floorDir = writeFloorProject(p, "floor", emptyProgram);
        const dynamicDir = writeFloorProject(p, "floor-dynamic", dynamicProgram);
        for (let i = 0; i < runs; i++) {
            const s = await oneRun(p, floorDir, dynamicDir, stopLog);
            samples.push(s);
            console.log(
                `run ${i + 1}/${runs}: up ${s.up} ms, no-op up ${s.noopUp} ms, destroy ${s.destroy} ms, VM boot-to-ready ${s.vmReady} ms, VM shutdown ${s.vmStop} ms, ` +
                    `overhead ${s.overhead} ms; floor: no-op up ${s.floorNoop} ms, --skip-preview ${s.floorSkip} ms; with one dynamic resource ${s.dynNoop} ms`,
            );
        }
    } finally {
        await p.dispose();
    }
    const keys = ["up", "noopUp", "destroy", "vmReady", "vmStop", "overhead", "floorNoop", "floorSkip", "dynNoop"] as const;
    const m = Object.fromEntries(keys.map((k) => [k, median(samples.map((s) => s[k]))])) as Record<(typeof keys)[number], number>;
    console.log(
        `median of ${runs}: up ${m.up} ms, no-op up ${m.noopUp} ms, destroy ${m.destroy} ms, VM boot-to-ready ${m.vmReady} ms, VM shutdown ${m.vmStop} ms, ` +
            `engine overhead ${m.overhead} ms; floor: no-op up ${m.floorNoop} ms, --skip-preview ${m.floorSkip} ms; with one dynamic resource ${m.dynNoop} ms`,
    );
    // Each goal is computed from the medians; "margin" is the budget left (negative: missed).
    const goals = [
        { goal: "no-op up <= floor + 0.5 s", valueMs: m.noopUp - m.floorNoop, budgetMs: 500 },
        { goal: "up - VM boot-to-ready - floor <= 1.0 s", valueMs: m.up - m.vmReady - m.floorNoop, budgetMs: 1000 },
        { goal: "destroy - VM shutdown <= 1.5 s", valueMs: m.destroy - m.vmStop, budgetMs: 1500 },
    ].map((g) => ({ ...g, met: g.valueMs <= g.budgetMs }));
    for (const g of goals) console.log(`goal ${g.goal}: ${g.valueMs} ms (${g.met ? "met" : "missed"}, margin ${g.budgetMs - g.valueMs} ms)`);
    console.log(`no-op up over the floor: ${m.noopUp - m.floorNoop} ms; one do-nothing Node.js dynamic resource alone costs ${m.dynNoop - m.floorNoop} ms over it (what the host resources paid before the Go plugin)`);
    console.log(JSON.stringify({ bench: "engine", runs, compileCache, typeCheck, pulumi: tools.pulumi, medianMs: m, goals }));
}

main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
});
