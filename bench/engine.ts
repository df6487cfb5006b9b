/**
 * Wall time of the real Pulumi engine on the ci stack (the bridge and two
 * fixture VMs, inside a network namespace of its own; see
 * test/helpers/engine.ts), and the engine's own overhead:
 *
 *   up          `pulumi up --yes` from an empty stack
 *   noopUp      a second `pulumi up --yes` (nothing to do)
 *   destroy     `pulumi destroy --yes`
 *   vmReady     the fixture VMs' boot-to-ready in that same up (vm.sh's
 *               readyMs, read from the state): the longest one, since the
 *               VMs boot in parallel
 *   overhead    up - vmReady: everything that is not a VM booting (program
 *               start, preview, nix builds, bridge, plugin round trips)
 *
 *   node --import tsx bench/engine.ts [--runs N]      (default 3; root, like the e2e test)
 *
 * Prints one line per run, then the medians, then one JSON line.
 */
import { EngineProject, engineTools, stackName } from "../test/helpers/engine";

interface Sample {
    up: number;
    noopUp: number;
    destroy: number;
    vmReady: number;
    overhead: number;
}

function median(values: number[]): number {
    const s = [...values].sort((a, b) => a - b);
    const mid = Math.floor(s.length / 2);
    return s.length % 2 === 1 ? s[mid]! : Math.round((s[mid - 1]! + s[mid]!) / 2);
}

function parseRuns(argv: string[]): number {
    const i = argv.indexOf("--runs");
    if (i < 0) return 3;
    const n = Number(argv[i + 1]);
    if (!Number.isInteger(n) || n < 1) {
        console.error(`bench/engine.ts: --runs needs a positive whole number, got '${argv[i + 1] ?? ""}'`);
        process.exit(2);
    }
    return n;
}

async function oneRun(p: EngineProject): Promise<Sample> {
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
    const vmReady = Math.max(...ready);
    return { up: up.ms, noopUp: noop.ms, destroy: destroy.ms, vmReady, overhead: up.ms - vmReady };
}

async function main(): Promise<void> {
    const runs = parseRuns(process.argv.slice(2));
    const tools = engineTools();
    const p = await EngineProject.create(tools);
    const samples: Sample[] = [];
    try {
        for (let i = 0; i < runs; i++) {
            const s = await oneRun(p);
            samples.push(s);
            console.log(`run ${i + 1}/${runs}: up ${s.up} ms, no-op up ${s.noopUp} ms, destroy ${s.destroy} ms, VM boot-to-ready ${s.vmReady} ms, overhead ${s.overhead} ms`);
        }
    } finally {
        await p.dispose();
    }
    const keys = ["up", "noopUp", "destroy", "vmReady", "overhead"] as const;
    const medians = Object.fromEntries(keys.map((k) => [k, median(samples.map((s) => s[k]))])) as Record<(typeof keys)[number], number>;
    console.log(`median of ${runs}: up ${medians.up} ms, no-op up ${medians.noopUp} ms, destroy ${medians.destroy} ms, VM boot-to-ready ${medians.vmReady} ms, engine overhead ${medians.overhead} ms`);
    console.log(JSON.stringify({ bench: "engine", runs, pulumi: tools.pulumi, medianMs: medians }));
}

main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
});
