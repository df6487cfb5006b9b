/**
 * Benchmark (not a test): how long the one-node test cluster of
 * test/helpers/cluster.ts takes to start (netns, certificates, etcd,
 * containerd, apiserver /readyz, controller-manager, scheduler, kubelet, node
 * Ready, default service account) and to stop (everything it started, gone).
 * The binaries must be built already (tools/build-kubernetes.sh cluster):
 * a cold build is not what this measures.
 *
 *   flock /tmp/pcp-eval-heavy.lock node --import tsx bench/cluster-start.ts [--runs N]   (default 3)
 *
 * Prints every sample, then medians, then one JSON line.
 */
import { performance } from "node:perf_hooks";
import { startCluster } from "../test/helpers/cluster";
import { median } from "./stats";

const runs = (() => {
    const i = process.argv.indexOf("--runs");
    const n = i >= 0 ? Number(process.argv[i + 1]) : 3;
    if (!Number.isInteger(n) || n < 1) throw new Error(`--runs must be a positive whole number, got ${process.argv[i + 1]}`);
    return n;
})();

async function main(): Promise<void> {
    const startMs: number[] = [];
    const stopMs: number[] = [];
    for (let i = 1; i <= runs; i++) {
        const t0 = performance.now();
        const cluster = await startCluster({ prefix: "pe14b" });
        const t1 = performance.now();
        await cluster.stop();
        const t2 = performance.now();
        startMs.push(Math.round(t1 - t0));
        stopMs.push(Math.round(t2 - t1));
        console.log(`run ${i}: start ${startMs.at(-1)} ms (node Ready), stop ${stopMs.at(-1)} ms`);
    }
    console.log(`median: start ${median(startMs)} ms, stop ${median(stopMs)} ms (${runs} runs)`);
    console.log(JSON.stringify({ bench: "cluster-start", runs, startMs, stopMs, medianStartMs: median(startMs), medianStopMs: median(stopMs) }));
}

main().catch((err: unknown) => {
    console.error(`bench/cluster-start.ts: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
});
