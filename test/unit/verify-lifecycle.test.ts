/**
 * The lifecycle's own logic: phase order, timing, going on past a failed
 * target, destroy after a failed up, the leftovers verdict and the summary.
 *
 * The stack object here is a stand-in ONLY for the Pulumi engine, which cannot
 * run in this test layer (no Pulumi CLI yet; the real engine run of
 * `npm run lifecycle` is exercised by the end-to-end tests of issue 9). Verify
 * itself is covered against real daemons in test/integration/verify.test.ts, so
 * here it is replaced by scripted per-target reports.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { forwardedPorts } from "../../components/constants";
import type { LeftoverScan } from "../../verify/leftovers";
import { type LifecycleStack, runLifecycle, stackTarget } from "../../verify/lifecycle";
import { formatOverall, formatSummaryTable, summarisePhase, type TargetReport } from "../../verify/report";
import type { CheckResult, CheckStatus, StackOutputs, Target } from "../../verify/types";
import { verifyPhases } from "../../verify/types";
import type { verifyTarget } from "../../verify/verify";

function target(variant: "eval" | "grafana"): Target {
    const ports = forwardedPorts(variant);
    return {
        kind: "vm",
        variant,
        pmcd: { host: "127.0.0.1", port: ports.pmcd },
        pmproxyUrl: `http://127.0.0.1:${ports.pmproxy}`,
        features: { linuxPmda: true, bpf: false, pmieTest: false, nodeExporter: false },
    };
}

const twoTargets = { targets: { eval: target("eval"), grafana: target("grafana") }, summary: "two VMs" };

interface FakeOptions {
    upError?: string;
    destroyError?: string;
    outputs?: unknown;
    outputsError?: string;
}

/** Records the calls the lifecycle makes; stands in for the Pulumi engine only. */
function fakeStack(opts: FakeOptions = {}): { stack: LifecycleStack; calls: string[] } {
    const calls: string[] = [];
    const stack: LifecycleStack = {
        name: "unit",
        async up(onOutput) {
            calls.push("up");
            onOutput("Updating (unit):\n");
            if (opts.upError) throw new Error(`code: 255\n stdout: \n stderr: error: ${opts.upError}\n`);
        },
        async outputs() {
            calls.push("outputs");
            if (opts.outputsError) throw new Error(opts.outputsError);
            // The Automation API's shape.
            const raw = (opts.outputs ?? twoTargets) as Record<string, unknown>;
            return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, { value: v, secret: false }]));
        },
        async destroy(onOutput) {
            calls.push("destroy");
            onOutput("Destroying (unit):\n");
            if (opts.destroyError) throw new Error(`error: ${opts.destroyError}`);
        },
        async stateDir() {
            calls.push("stateDir");
            return "/nonexistent/pe8-state";
        },
    };
    return { stack, calls };
}

function scriptedVerify(statuses: Record<string, CheckStatus>, calls: string[]): typeof verifyTarget {
    return async (name: string, outputs: StackOutputs) => {
        calls.push(`verify ${name}`);
        assert.ok(outputs.targets[name], "verify gets the parsed outputs");
        const status = statuses[name] ?? "PASS";
        const checks: CheckResult[] = verifyPhases.map((phase) => ({
            target: name,
            phase,
            name: `${phase} check`,
            status: phase === "metrics" ? status : "PASS",
            message: phase === "metrics" && status === "FAIL" ? `kernel.all.load is absent at ${outputs.targets[name].pmproxyUrl}` : "ok",
            ms: 5,
            attempts: 1,
        }));
        const report: TargetReport = {
            target: name,
            kind: "vm",
            status,
            ms: 25,
            phases: verifyPhases.map((p) => summarisePhase(p, checks.filter((c) => c.phase === p), 5)),
            checks,
        };
        return report;
    };
}

const cleanState = async (stateDir: string): Promise<LeftoverScan> => ({
    stateDir,
    stateDirExists: true,
    leftovers: [],
    problems: [],
    scanned: { pidFiles: 2, outLinks: 0, records: 1 },
});

test("lifecycle runs up, verify per target, destroy, leftovers in that order and passes when all pass", async () => {
    const { stack, calls } = fakeStack();
    const lines: string[] = [];
    const report = await runLifecycle(stack, { verify: scriptedVerify({}, calls), leftovers: cleanState, log: (l) => lines.push(l) });
    assert.deepEqual(calls, ["up", "outputs", "verify eval", "verify grafana", "destroy", "stateDir"]);
    assert.equal(report.tool, "lifecycle");
    assert.equal(report.ok, true);
    assert.deepEqual(report.targets.map((t) => t.target), ["eval", "grafana"]);
    for (const t of report.targets) {
        assert.deepEqual(t.phases.map((p) => p.phase), ["up", ...verifyPhases, "destroy", "leftovers"]);
        assert.equal(t.status, "PASS");
    }
    assert.deepEqual(report.stackPhases?.map((p) => `${p.phase}:${p.status}`), ["up:PASS", "destroy:PASS", "leftovers:PASS"]);
    assert.ok(lines.includes("   up | Updating (unit):"), "engine output is passed on");
    assert.ok(lines.some((l) => /^== up: PASS in \d+ ms$/.test(l)));
    assert.ok(lines.some((l) => /^PASS .* leftovers {2}no process from pid files: 2 pid file\(s\), no process left$/.test(l)));
});

test("a failed target does not stop the run: the next target is verified, destroy runs, both are reported", async () => {
    const { stack, calls } = fakeStack();
    const report = await runLifecycle(stack, { verify: scriptedVerify({ eval: "FAIL" }, calls), leftovers: cleanState });
    assert.deepEqual(calls, ["up", "outputs", "verify eval", "verify grafana", "destroy", "stateDir"]);
    assert.equal(report.ok, false);
    assert.deepEqual(report.targets.map((t) => `${t.target}:${t.status}`), ["eval:FAIL", "grafana:PASS"]);
    assert.equal(report.totals.fail, 1);
    assert.match(formatOverall(report), /^lifecycle: FAIL, 2 target\(s\), .* 1 failed, .*; failed: eval$/);
    const table = formatSummaryTable(report.targets[0]);
    assert.match(table, /^=== eval \(vm\): FAIL ===$/m);
    assert.match(table, /^metrics +FAIL +0 +1 +0 +5 ms$/m);
    assert.match(table, /^up +PASS +1 +0 +0 +\d+ ms +stack-wide$/m);
    assert.match(table, /^leftovers +PASS +3 +0 +0 +\d+ ms +stack-wide$/m);
});

test("a failed up is reported with the engine's error, nothing is verified, and destroy still runs", async () => {
    const { stack, calls } = fakeStack({ upError: "resource 'eval' failed: vm.sh start timed out", outputsError: "no outputs" });
    const report = await runLifecycle(stack, { verify: scriptedVerify({}, calls), leftovers: cleanState, only: ["eval"] });
    assert.deepEqual(calls, ["up", "outputs", "destroy", "stateDir"]);
    assert.equal(report.ok, false);
    const up = report.stackChecks?.find((c) => c.phase === "up");
    assert.equal(up?.status, "FAIL");
    assert.equal(up?.message, "error: resource 'eval' failed: vm.sh start timed out");
    assert.deepEqual(report.targets.map((t) => t.target), ["eval"], "--only names the target even without outputs");
    assert.match(report.targets[0].checks[0].message, /^not verified: pulumi up failed \(error: resource 'eval' failed/);
    assert.equal(report.stackPhases?.find((p) => p.phase === "destroy")?.status, "PASS");
});

test("without outputs and without --only a failed up is reported on the stack pseudo-target", async () => {
    const { stack } = fakeStack({ upError: "boom", outputsError: "no outputs" });
    const report = await runLifecycle(stack, { leftovers: cleanState });
    assert.deepEqual(report.targets.map((t) => t.target), [stackTarget]);
    assert.match(formatOverall(report), /failed: \(stack\), up$/);
});

test("--only verifies just that target; an unknown one fails with the known names and still destroys", async () => {
    const one = fakeStack();
    const r1 = await runLifecycle(one.stack, { verify: scriptedVerify({}, one.calls), leftovers: cleanState, only: ["grafana"] });
    assert.deepEqual(one.calls, ["up", "outputs", "verify grafana", "destroy", "stateDir"]);
    assert.deepEqual(r1.targets.map((t) => t.target), ["grafana"]);
    assert.equal(r1.ok, true);

    const bad = fakeStack();
    const r2 = await runLifecycle(bad.stack, { verify: scriptedVerify({}, bad.calls), leftovers: cleanState, only: ["nosuch"] });
    assert.deepEqual(bad.calls, ["up", "outputs", "destroy", "stateDir"]);
    assert.equal(r2.ok, false);
    assert.equal(r2.targets[0].checks[0].message, "unknown target nosuch; the stack's targets are: eval, grafana");
});

test("a failed destroy and leftovers after it are both FAIL, each saying what is left and where", async () => {
    const { stack, calls } = fakeStack({ destroyError: "deleting bridge: device busy" });
    const report = await runLifecycle(stack, {
        verify: scriptedVerify({}, calls),
        leftovers: async (stateDir) => ({
            stateDir,
            stateDirExists: true,
            leftovers: [
                { kind: "process", what: "4242", recordedIn: `${stateDir}/vms/eval/vm.pid`, detail: "qemu-system-x86_64 -name eval" },
                { kind: "bridge", what: "pe8-br0", recordedIn: `${stateDir}/net.json` },
            ],
            problems: [],
            scanned: { pidFiles: 1, outLinks: 0, records: 1 },
        }),
    });
    assert.equal(report.ok, false);
    const byName = new Map(report.stackChecks?.map((c) => [c.name, c]));
    assert.equal(byName.get("pulumi destroy")?.message, "error: deleting bridge: device busy");
    assert.equal(byName.get("no process from pid files")?.status, "FAIL");
    assert.match(byName.get("no process from pid files")?.message ?? "", /process 4242 still runs \(qemu-system-x86_64 -name eval\), from \/nonexistent\/pe8-state\/vms\/eval\/vm\.pid/);
    assert.match(byName.get("no bridge, TAP or nft table")?.message ?? "", /bridge pe8-br0 still exists, recorded in \/nonexistent\/pe8-state\/net\.json/);
    assert.equal(byName.get("no out-links")?.status, "PASS");
    for (const t of report.targets) assert.equal(t.status, "FAIL", "a stack-wide failure fails every target's table");
});

test("leftovers that cannot be checked are a FAIL, not a silent pass", async () => {
    const { stack, calls } = fakeStack();
    const report = await runLifecycle(stack, {
        verify: scriptedVerify({}, calls),
        leftovers: async (stateDir) => ({
            stateDir,
            stateDirExists: true,
            leftovers: [],
            problems: ["nft list tables failed (exit 1): Operation not permitted"],
            scanned: { pidFiles: 0, outLinks: 0, records: 1 },
        }),
    });
    const check = report.stackChecks?.find((c) => c.name === "leftovers could be checked");
    assert.equal(check?.status, "FAIL");
    assert.match(check?.message ?? "", /Operation not permitted/);
    assert.equal(report.ok, false);
});
