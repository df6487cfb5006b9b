/**
 * Benchmark (not a test): host/net.sh's verbs, called as the TapBridge
 * providers call them (components/tapBridge.ts), inside a network namespace
 * the bench creates itself and removes at the end. Per run:
 *   check, bridge-up, bridge-up again (nothing to change), tap-up,
 *   tap-up again, status (the bridge), status (the TAP), tap-down, bridge-down
 * Each call is timed from spawn to exit; a jq in front of the real one (a
 * temporary directory first on PATH) counts how many times each verb starts jq,
 * since jq 1.6 costs ~40 ms per start here and was most of net.sh's time.
 *
 *   node --import tsx bench/net.ts [--runs N] [--script PATH]   (default 5, host/net.sh; needs root)
 *
 * Compare two scripts in one sitting, e.g. main's against the working tree's (an
 * older net.sh needs its own lib.sh beside it and nix/constants.json at ../nix):
 *   d=$(mktemp -d); mkdir "$d/host" "$d/nix"
 *   for f in host/net.sh host/lib.sh nix/constants.json; do git show "main:$f" > "$d/$f"; done
 *   node --import tsx bench/net.ts --script "$d/host/net.sh"; node --import tsx bench/net.ts
 *
 * Prints one line per verb (median ms, jq starts per call), then one JSON line.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { constants } from "../components/constants";
import { Netns } from "../test/helpers/netns";
import { isRoot } from "../test/helpers/tools";
import { median } from "./stats";

function option(name: string): string | undefined {
    const i = process.argv.indexOf(name);
    if (i < 0) return undefined;
    const v = process.argv[i + 1];
    if (v === undefined || v.startsWith("--")) throw new Error(`${name} needs a value`);
    return v;
}

const runs = (() => {
    const raw = option("--runs") ?? "5";
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--runs must be a positive whole number, got ${raw}`);
    return n;
})();
const repoRoot = path.resolve(__dirname, "..");
const script = path.resolve(option("--script") ?? path.join(repoRoot, "host", "net.sh"));
if (!fs.existsSync(script)) throw new Error(`--script: ${script} does not exist`);
/** How the script is named in the output: relative inside the checkout, else absolute. */
const scriptLabel = path.relative(repoRoot, script).startsWith("..") ? script : path.relative(repoRoot, script);

const net = constants.network;
const gatewayCidr = `${net.gateway}/${net.subnet.split("/")[1]}`;
const tap = `${net.tapPrefix}0`;
/** The TAPs' owner: any user that exists works inside the namespace. */
const owner = "nobody";

interface Step {
    label: string;
    args: (stateDir: string) => string[];
}

const steps: Step[] = [
    { label: "check", args: () => ["check", "--owner", owner] },
    { label: "bridge-up", args: (d) => ["bridge-up", "--state-dir", d, "--bridge", net.bridge, "--gateway-cidr", gatewayCidr, "--nft-table", net.nftTable] },
    { label: "bridge-up (no change)", args: (d) => ["bridge-up", "--state-dir", d, "--bridge", net.bridge, "--gateway-cidr", gatewayCidr, "--nft-table", net.nftTable] },
    { label: "tap-up", args: (d) => ["tap-up", "--state-dir", d, "--bridge", net.bridge, "--tap", tap, "--owner", owner, "--multi-queue", "on"] },
    { label: "tap-up (no change)", args: (d) => ["tap-up", "--state-dir", d, "--bridge", net.bridge, "--tap", tap, "--owner", owner, "--multi-queue", "on"] },
    { label: "status (bridge)", args: (d) => ["status", "--state-dir", d, "--bridge", net.bridge, "--nft-table", net.nftTable] },
    { label: "status (tap)", args: (d) => ["status", "--state-dir", d, "--tap", tap] },
    { label: "tap-down", args: (d) => ["tap-down", "--state-dir", d, "--tap", tap] },
    { label: "bridge-down", args: (d) => ["bridge-down", "--state-dir", d] },
];

function main(): void {
    if (!isRoot()) throw new Error("bench/net.ts needs root (it creates a network namespace of its own)");
    const realJq = spawnSync("sh", ["-c", "command -v jq"], { encoding: "utf8" }).stdout.trim();
    if (realJq === "") throw new Error("jq is not installed (apt-get install jq)");
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "pcp-eval-bench-net-"));
    const shimDir = path.join(tmp, "bin");
    const jqLog = path.join(tmp, "jq.log");
    fs.mkdirSync(shimDir);
    fs.writeFileSync(path.join(shimDir, "jq"), `#!/bin/sh\necho >>'${jqLog}'\nexec '${realJq}' "$@"\n`, { mode: 0o755 });
    const env = { PATH: `${shimDir}:${process.env.PATH ?? ""}` };
    const jqStarts = () => (fs.existsSync(jqLog) ? fs.readFileSync(jqLog, "utf8").length : 0);

    const ns = Netns.create("pcpbench");
    const ms: Record<string, number[]> = {};
    const jq: Record<string, number[]> = {};
    try {
        for (let i = 0; i < runs; i++) {
            const stateDir = path.join(tmp, `state-${i}`);
            const line: string[] = [];
            for (const step of steps) {
                const before = jqStarts();
                const t0 = performance.now();
                const r = ns.run("bash", [script, ...step.args(stateDir)], { env });
                const took = performance.now() - t0;
                if (r.status !== 0) throw new Error(`${step.label} failed (${r.status}):\n${r.stderr}`);
                (ms[step.label] ??= []).push(took);
                (jq[step.label] ??= []).push(jqStarts() - before);
                line.push(`${step.label} ${Math.round(took)}`);
            }
            console.log(`run ${i + 1}: ${line.join(", ")}`);
        }
    } finally {
        ns.destroy();
        fs.rmSync(tmp, { recursive: true, force: true });
    }

    const result: Record<string, { medianMs: number; jqStarts: number }> = {};
    console.log(`${scriptLabel}, ${runs} runs (median ms, jq starts per call):`);
    for (const step of steps) {
        const m = Math.round(median(ms[step.label]!));
        const j = median(jq[step.label]!);
        result[step.label] = { medianMs: m, jqStarts: j };
        console.log(`  ${step.label.padEnd(22)} ${String(m).padStart(6)} ms  ${String(j).padStart(3)} jq`);
    }
    console.log(JSON.stringify({ script: scriptLabel, runs, verbs: result }));
}

main();
