/**
 * `npm run lifecycle` and `npm run verify -- --stack` on the REAL Pulumi engine,
 * through the Automation API: a fixture project of this test's own (a program
 * that only exports `targets`, pointing at the real pmcd/pmproxy the harness
 * starts on loopback), a local file backend and PULUMI_HOME in a temporary
 * directory. The pcp-eval stack itself is brought up end to end by issue 9's
 * tests; this one covers the lifecycle's engine plumbing: up, outputs, destroy,
 * the state dir, and the summary.
 *
 * The Pulumi CLI is the one on PATH, or the one tools/build.sh has built.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test, type TestContext } from "node:test";
import { constants } from "../../components/constants";
import type { VerifyReport } from "../../verify/report";
import type { Target } from "../../verify/types";
import { freePort, pcpNeeds, startPcp } from "../helpers/pcp";
import { run, type RunResult } from "../helpers/run";
import { haveCommand, requireTools } from "../helpers/tools";

const projectDir = path.resolve(__dirname, "..", "..");
const stackName = "pe8";

/** Directory holding `pulumi` (and its language host) when it is not on PATH; "" when it is. */
function pulumiBinDir(): string | undefined {
    if (haveCommand("pulumi")) return "";
    const build = path.join(projectDir, "tools", "build.sh");
    if (!existsSync(build)) return undefined;
    try {
        const out = execFileSync("bash", [build, "--print"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
        const binDir = (JSON.parse(out) as { binDir?: string }).binDir;
        return binDir && existsSync(path.join(binDir, "pulumi")) ? binDir : undefined;
    } catch {
        return undefined;
    }
}

const npmScript = (script: "verify" | "lifecycle", args: string[], env: NodeJS.ProcessEnv): Promise<RunResult> =>
    run(process.execPath, ["--import", "tsx", path.join(projectDir, "verify", script === "verify" ? "main.ts" : "lifecycle-main.ts"), ...args], { cwd: projectDir, env });

test("lifecycle and verify --stack drive a real Pulumi engine through the Automation API", async (t: TestContext) => {
    const binDir = pulumiBinDir();
    if (!requireTools(t, [...pcpNeeds, ["the pulumi CLI is neither on PATH nor built by tools/build.sh", () => binDir !== undefined]])) return;

    const root = mkdtempSync(path.join(os.tmpdir(), "pe8-engine-"));
    const proj = path.join(root, "project");
    const cleanups: Array<() => Promise<void> | void> = [() => rmSync(root, { recursive: true, force: true })];
    try {
        const pcp = await startPcp();
        cleanups.push(() => pcp.stop());

        mkdirSync(proj);
        mkdirSync(path.join(root, "backend"));
        symlinkSync(path.join(projectDir, "node_modules"), path.join(proj, "node_modules"));
        writeFileSync(path.join(proj, "Pulumi.yaml"), "name: pe8-fixture\nruntime:\n  name: nodejs\n  options:\n    typescript: false\n");
        writeFileSync(path.join(proj, "package.json"), JSON.stringify({ name: "pe8-fixture", private: true, main: "index.js" }));
        // The program exports whatever outputs.json holds, so each subtest sets the stack's outputs.
        writeFileSync(
            path.join(proj, "index.js"),
            'const fs = require("fs");\nconst path = require("path");\nmodule.exports = JSON.parse(fs.readFileSync(path.join(__dirname, "outputs.json"), "utf8"));\n',
        );
        const good: Target = {
            kind: "vm",
            variant: "eval",
            networking: "user",
            pmcd: { ...pcp.pmcd },
            pmproxyUrl: pcp.pmproxyUrl,
            features: { linuxPmda: true, bpf: false, pmieTest: false, nodeExporter: false },
        };
        const setOutputs = (targets: Record<string, Target>): void =>
            writeFileSync(path.join(proj, "outputs.json"), JSON.stringify({ targets, summary: `${Object.keys(targets).length} target(s)` }));

        mkdirSync(path.join(root, "tmp"));
        const env: NodeJS.ProcessEnv = {
            ...process.env,
            PATH: binDir ? `${binDir}${path.delimiter}${process.env.PATH ?? ""}` : process.env.PATH,
            // The engine's and the language host's temp files go with root (engine.ts's harness does the same).
            TMPDIR: path.join(root, "tmp"),
            PULUMI_BACKEND_URL: `file://${path.join(root, "backend")}`,
            PULUMI_HOME: path.join(root, "pulumi-home"),
            PULUMI_CONFIG_PASSPHRASE: "",
            PULUMI_SKIP_UPDATE_CHECK: "true",
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
        };
        const init = await run("pulumi", ["stack", "init", stackName], { cwd: proj, env });
        assert.equal(init.code, 0, init.stderr);

        await t.test("lifecycle: up, verify, destroy, leftovers all PASS, each timed in the target's table", async () => {
            setOutputs({ eval: good });
            const reportFile = path.join(root, "lifecycle.json");
            const r = await npmScript("lifecycle", ["--stack", stackName, "--project", proj, "--json", reportFile, "--timeout", "services=10"], env);
            assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
            assert.match(r.stdout, /^== up: PASS in \d+(\.\d)? (ms|s)$/m);
            assert.match(r.stdout, /^ {3}up \| .*pe8-fixture-pe8/m, "the engine's own output is shown");
            assert.match(r.stdout, /^PASS .*eval\/metrics {2}kernel\.all\.load: kernel\.all\.load = /m);
            assert.match(r.stdout, /^== destroy: PASS in /m);
            assert.match(r.stdout, /^PASS .*leftovers {2}state directory: .*\.pcp-eval-state\/pe8 does not exist/m);
            assert.match(r.stdout, /^=== eval \(vm eval\): PASS ===$/m);
            for (const phase of ["up", "services", "metrics", "consoles", "parity", "pmie", "destroy", "leftovers"]) {
                assert.match(r.stdout, new RegExp(`^${phase} +(PASS|SKIP) +\\d+ +0 +\\d+ +\\d`, "m"), `${phase} row`);
            }
            const report = JSON.parse(readFileSync(reportFile, "utf8")) as VerifyReport;
            assert.equal(report.tool, "lifecycle");
            assert.equal(report.ok, true);
            assert.deepEqual(report.stackPhases?.map((p) => `${p.phase}:${p.status}`), ["up:PASS", "destroy:PASS", "leftovers:PASS"]);
            const after = await run("pulumi", ["stack", "output", "--json", "--stack", stackName], { cwd: proj, env });
            assert.deepEqual(JSON.parse(after.stdout), {}, "destroy removed the stack's outputs");
        });

        await t.test("verify --stack reads the outputs with the Automation API", async () => {
            setOutputs({ eval: good });
            const up = await run("pulumi", ["up", "--yes", "--stack", stackName], { cwd: proj, env });
            assert.equal(up.code, 0, up.stderr);
            try {
                const r = await npmScript("verify", ["--stack", stackName, "--project", proj, "--phase", "services,metrics"], env);
                assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
                assert.match(r.stdout, new RegExp(`^PASS .*eval/services {2}pmcd tcp ${pcp.pmcd.host}:${pcp.pmcd.port}:`, "m"));
                assert.match(r.stdout, new RegExp(`^PASS .*at least ${constants.metrics.minLinuxMetrics} metric names: \\d+ metric names`, "m"));
                const wrong = await npmScript("verify", ["--stack", "nosuch", "--project", proj], env);
                assert.equal(wrong.code, 2);
                assert.match(wrong.stderr, /could not read the outputs with the Pulumi Automation API: .*nosuch/);
            } finally {
                const down = await run("pulumi", ["destroy", "--yes", "--stack", stackName], { cwd: proj, env });
                assert.equal(down.code, 0, down.stderr);
            }
        });

        await t.test("lifecycle goes on past a failed target and reports a leftover process with its pid file", async () => {
            const closed = await freePort();
            setOutputs({ broken: { ...good, pmproxyUrl: `http://127.0.0.1:${closed}` }, eval: good });
            // Something destroy did not stop: a process recorded in the stack's state dir.
            const stateDir = path.join(proj, ".pcp-eval-state", stackName);
            mkdirSync(stateDir, { recursive: true });
            const sleeper = spawn("sleep", ["300"], { stdio: "ignore" });
            const exited = new Promise<void>((r) => sleeper.once("exit", () => r()));
            cleanups.push(async () => {
                if (sleeper.exitCode === null && sleeper.signalCode === null) {
                    sleeper.kill("SIGTERM");
                    await exited;
                }
            });
            writeFileSync(path.join(stateDir, "broken.pid"), `${sleeper.pid}\n`);
            const reportFile = path.join(root, "lifecycle-fail.json");
            // Short for the broken target, whose pmproxy never opens; long enough that eval's own fetches pass on a busy machine.
            const r = await npmScript("lifecycle", ["--stack", stackName, "--project", proj, "--json", reportFile, "--timeout", "services=3", "--timeout", "metrics=15"], env);
            assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
            assert.match(r.stdout, new RegExp(`^FAIL .*broken/services {2}pmproxy http /pmapi/context: pmproxy at http://127\\.0\\.0\\.1:${closed} did not open`, "m"));
            assert.match(r.stdout, /^=== broken \(vm eval\): FAIL ===$/m);
            assert.match(r.stdout, /^== verify eval$/m, "the next target is verified after a failed one");
            assert.match(r.stdout, /^PASS .*eval\/metrics {2}kernel\.all\.load:/m);
            assert.match(r.stdout, /^== destroy: PASS/m);
            assert.match(r.stdout, new RegExp(`^FAIL .*leftovers {2}no process from pid files: process ${sleeper.pid} still runs \\(sleep 300\\), from .*broken\\.pid`, "m"));
            assert.match(r.stdout, /^lifecycle: FAIL, 2 target\(s\), .*; failed: broken, eval, leftovers$/m);
            const report = JSON.parse(readFileSync(reportFile, "utf8")) as VerifyReport;
            assert.deepEqual(report.targets.map((x) => x.target), ["broken", "eval"]);
            const evalChecks = report.targets[1].checks;
            assert.deepEqual(evalChecks.filter((c) => c.status === "FAIL"), [], "eval's own checks all passed");
        });
    } finally {
        for (const c of cleanups.reverse()) await c();
    }
});
