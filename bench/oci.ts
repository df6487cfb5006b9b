/**
 * Benchmark (not a test): the container path with a real dockerd and the PCP
 * fixture image (test/fixtures/pcp-image), per run:
 *   loadMs      oci.sh load of an image Docker does not hold yet
 *   reloadMs    oci.sh load of the same tarball again (loaded:false, no docker load)
 *   readyMs     docker run (the flags OciImage gives Docker) until oci.sh wait-pmcd
 *               sees pmcd answer on the published port
 *   stopMs      docker stop (SIGTERM; graceful)
 *   removeMs    docker rm plus oci.sh remove of the tag
 *
 *   node --import tsx bench/oci.ts [--runs N]     (default 5; needs root)
 *
 * Prints every sample, then medians, then one JSON line.
 */
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { containerSpec, dockerRunArgs } from "../components/ociContainerSpec";
import { buildPcpImage } from "../test/fixtures/pcp-image/fixture";
import { ensureDockerd } from "../test/helpers/dockerd";
import { freePort } from "../test/helpers/ports";
import { median } from "./stats";

const runs = (() => {
    const i = process.argv.indexOf("--runs");
    const n = i >= 0 ? Number(process.argv[i + 1]) : 5;
    if (!Number.isInteger(n) || n < 1) throw new Error(`--runs must be a positive whole number, got ${process.argv[i + 1]}`);
    return n;
})();

const repoRoot = path.resolve(__dirname, "..");
const ociScript = path.join(repoRoot, "host/oci.sh");
const repo = "pe6-bench-pcp-eval";
const stack = `pe6-bench-${process.pid}`;

function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): { ms: number; stdout: string } {
    const t0 = performance.now();
    const r = spawnSync(cmd, args, { env, encoding: "utf8", cwd: repoRoot });
    const ms = performance.now() - t0;
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr}`);
    return { ms, stdout: r.stdout };
}

async function main(): Promise<void> {
    const t0 = performance.now();
    const image = buildPcpImage();
    const buildMs = performance.now() - t0;
    console.log(`fixture image: ${image.tarball} (${image.cached ? "cached" : "built"} in ${Math.round(buildMs)} ms)`);
    const daemon = await ensureDockerd();
    console.log(`docker ${daemon.version} (${daemon.started ? `started by the bench, pid ${daemon.pid}` : "already running"})`);
    const env = daemon.env;
    const ref = `${repo}:${image.hash}`;
    const samples: Array<Record<string, number>> = [];
    try {
        for (let i = 0; i < runs; i++) {
            const name = `pe6-bench-${process.pid}-${i}`;
            const load = timed("bash", [ociScript, "load", "--tarball", image.tarball, "--repo", repo], env);
            if (!JSON.parse(load.stdout).loaded) throw new Error(`${ref} was already loaded; remove it first`);
            const reload = timed("bash", [ociScript, "load", "--tarball", image.tarball, "--repo", repo], env);
            const pmcdPort = await freePort();
            let pmproxyPort = await freePort();
            while (pmproxyPort === pmcdPort) pmproxyPort = await freePort();
            const spec = containerSpec({ stack, projectDir: repoRoot, hostAddress: "127.0.0.1", pmcdPort, pmproxyPort, name });
            const r0 = performance.now();
            timed("docker", ["run", ...dockerRunArgs(spec, ref)], env);
            timed("bash", [ociScript, "wait-pmcd", "--address", "127.0.0.1", "--port", String(pmcdPort)], env);
            const readyMs = performance.now() - r0;
            const stop = timed("docker", ["stop", name], env);
            const s0 = performance.now();
            timed("docker", ["rm", name], env);
            timed("bash", [ociScript, "remove", "--image", ref], env);
            const removeMs = performance.now() - s0;
            const sample = { loadMs: load.ms, reloadMs: reload.ms, readyMs, stopMs: stop.ms, removeMs };
            samples.push(sample);
            console.log(`run ${i + 1}: ${Object.entries(sample).map(([k, v]) => `${k} ${Math.round(v)}`).join(", ")}`);
        }
    } finally {
        spawnSync("docker", ["rm", "-f", ...samples.map((_, i) => `pe6-bench-${process.pid}-${i}`)], { env });
        spawnSync("docker", ["image", "rm", ref], { env });
        await daemon.stop();
    }
    const keys = Object.keys(samples[0]);
    const medians = Object.fromEntries(keys.map((k) => [k, Math.round(median(samples.map((s) => s[k])))]));
    console.log(`medians over ${runs} runs: ${keys.map((k) => `${k} ${medians[k]}`).join(", ")}`);
    console.log(JSON.stringify({ runs, buildMs: Math.round(buildMs), cached: image.cached, medians }));
}

main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
});
