/**
 * Benchmark (not a test): how long `vm.sh start` takes until a fixture VM is
 * all ready (process, serial console, virtio console, pmcd-like TCP and HTTP
 * through hostfwd), for one VM, four started concurrently, and the same four
 * started one after another; the ratio concurrent/sequential (goal <= 0.6 on
 * a 2-core machine); and the readiness latency: from the guest's HTTP port
 * first answering on the host (polled every 10 ms by this script) to
 * `vm.sh start` returning (goal < 300 ms).
 *
 *   node --import tsx bench/vm-start.ts [--runs N]     (default 5)
 *
 * Prints every sample, then medians, then one JSON line.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { constants } from "../components/constants";
import type { VmStartResult } from "../components/microVmProcess";
import { buildFixture, freePorts, makeRunner, vmScript, vmSh, type Runner } from "../test/fixtures/vm/fixture";
import { median } from "./stats";

interface Vm {
    name: string;
    runner: Runner;
    pmcd: number;
    pmproxy: number;
    serial: number;
    virtio: number;
}

interface StartSample {
    /** launch of vm.sh start -> its exit, ms */
    readyMs: number;
    /** guest HTTP port first answered on the host -> vm.sh start exited, ms */
    latencyMs: number;
    pid: number;
}

const runs = (() => {
    const i = process.argv.indexOf("--runs");
    const n = i >= 0 ? Number(process.argv[i + 1]) : 5;
    if (!Number.isInteger(n) || n < 1) throw new Error(`--runs must be a positive whole number, got ${process.argv[i + 1]}`);
    return n;
})();

let stateDir = "";

/** Resolves with the time the URL first answers 200; polls every 10 ms until `done()`. */
async function firstAnswer(url: string, done: () => boolean): Promise<number | undefined> {
    const once = (): Promise<boolean> =>
        new Promise((resolve) => {
            const req = http.get(url, { agent: false, timeout: 500 }, (res) => {
                res.resume();
                resolve(res.statusCode === 200);
            });
            req.on("timeout", () => req.destroy());
            req.on("error", () => resolve(false));
        });
    while (!done()) {
        if (await once()) return performance.now();
        await new Promise((r) => setTimeout(r, 10));
    }
    return undefined;
}

function startArgs(vm: Vm): string[] {
    return [
        "start", "--name", vm.name, "--state-dir", stateDir, "--runner", vm.runner.runner,
        ...[vm.pmcd, vm.pmproxy, vm.serial, vm.virtio].flatMap((p) => ["--port", `${p}`]),
        "--probe", `serial=console:127.0.0.1:${vm.serial}`,
        "--probe", `virtio=console:127.0.0.1:${vm.virtio}`,
        "--probe", `services=tcp:127.0.0.1:${vm.pmcd}`,
        "--probe", `services=http://127.0.0.1:${vm.pmproxy}/pmapi/context`,
    ];
}

async function startVm(vm: Vm): Promise<StartSample> {
    const t0 = performance.now();
    let exited = false;
    const answered = firstAnswer(`http://127.0.0.1:${vm.pmproxy}/pmapi/context`, () => exited);
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn(vmScript, startArgs(vm), { stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.on("error", reject);
        child.on("close", (code) => resolve({ code, stdout, stderr }));
    });
    const t1 = performance.now();
    exited = true;
    if (result.code !== 0) throw new Error(`start ${vm.name} failed:\n${result.stderr}`);
    const open = await answered;
    const out = JSON.parse(result.stdout.trim()) as VmStartResult;
    return { readyMs: t1 - t0, latencyMs: open === undefined ? Number.NaN : t1 - open, pid: out.pid };
}

async function stopVm(vm: Vm): Promise<void> {
    const r = await vmSh(["stop", "--name", vm.name, "--state-dir", stateDir, "--shutdown-timeout", "10", "--exit-timeout", "10"]);
    if (r.code !== 0) throw new Error(`stop ${vm.name} failed:\n${r.stderr}`);
}

async function main(): Promise<void> {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "pe5-bench-"));
    stateDir = path.join(root, "state");
    const vms: Vm[] = [];
    try {
        const fixture = await buildFixture();
        console.log(`fixture: ${fixture.kernelPackage} ${fixture.kernelVersion}, initrd ${path.basename(fixture.initrd)}`);
        for (let i = 0; i < 4; i++) {
            const [pmcd, pmproxy, serial, virtio] = await freePorts(4);
            const name = `bench${i}`;
            const runner = await makeRunner({
                out: path.join(root, `runner-${name}`),
                name: `pe5-${name}`,
                serialPort: serial,
                virtioPort: virtio,
                forwards: [
                    { host: pmcd, guest: constants.ports.pmcd },
                    { host: pmproxy, guest: constants.ports.pmproxy },
                ],
                tcpServices: [constants.ports.pmcd],
                httpServices: [constants.ports.pmproxy],
            });
            vms.push({ name, runner, pmcd, pmproxy, serial, virtio });
        }
        const accel = vms[0]?.runner.accel ?? "tcg";
        console.log(`host: ${os.cpus().length} cores, accelerator ${accel}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
        console.log(`runs: ${runs}\n`);

        const one: number[] = [];
        const concurrent: number[] = [];
        const sequential: number[] = [];
        const latency: number[] = [];
        for (let run = 1; run <= runs; run++) {
            const s = await startVm(vms[0]);
            await stopVm(vms[0]);
            one.push(s.readyMs);
            latency.push(s.latencyMs);

            let t0 = performance.now();
            const c = await Promise.all(vms.map(startVm));
            concurrent.push(performance.now() - t0);
            latency.push(...c.map((x) => x.latencyMs));
            await Promise.all(vms.map(stopVm));

            t0 = performance.now();
            for (const vm of vms) latency.push((await startVm(vm)).latencyMs);
            sequential.push(performance.now() - t0);
            await Promise.all(vms.map(stopVm));

            console.log(
                `run ${run}: one ${one.at(-1)?.toFixed(0)} ms, four concurrent ${concurrent.at(-1)?.toFixed(0)} ms, ` +
                    `four sequential ${sequential.at(-1)?.toFixed(0)} ms, latencies ${latency.slice(-9).map((l) => l.toFixed(0)).join(" ")} ms`,
            );
        }
        const summary = {
            runs,
            accelerator: accel,
            cores: os.cpus().length,
            oneMedianMs: Math.round(median(one)),
            fourConcurrentMedianMs: Math.round(median(concurrent)),
            fourSequentialMedianMs: Math.round(median(sequential)),
            ratioConcurrentToSequential: Number((median(concurrent) / median(sequential)).toFixed(3)),
            readinessLatencyMedianMs: Math.round(median(latency.filter((l) => !Number.isNaN(l)))),
            readinessLatencyMaxMs: Math.round(Math.max(...latency.filter((l) => !Number.isNaN(l)))),
            latencySamples: latency.length,
        };
        console.log("\nmedians");
        console.log(`  one VM all ready:            ${summary.oneMedianMs} ms`);
        console.log(`  four concurrent all ready:   ${summary.fourConcurrentMedianMs} ms`);
        console.log(`  four sequential all ready:   ${summary.fourSequentialMedianMs} ms`);
        console.log(`  ratio concurrent/sequential: ${summary.ratioConcurrentToSequential} (goal <= 0.6)`);
        console.log(`  readiness latency:           ${summary.readinessLatencyMedianMs} ms median, ${summary.readinessLatencyMaxMs} ms max over ${summary.latencySamples} starts (goal < 300 ms)`);
        console.log(JSON.stringify(summary));
    } finally {
        for (const vm of vms) await vmSh(["stop", "--name", vm.name, "--state-dir", stateDir, "--shutdown-timeout", "5", "--exit-timeout", "5"]);
        fs.rmSync(root, { recursive: true, force: true });
    }
}

main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
});
