/**
 * End to end under the real Pulumi engine (CLI v3.274 built by tools/build.sh,
 * Node.js language host, pcp-eval's provider plugin), on the `ci` stack: the TAP
 * bridge and two fixture VMs (one user-networked, one on the bridge) built by
 * Debian's nix from the offline fixture flake. Everything runs inside a
 * network namespace of the test's own (see test/helpers/engine.ts).
 *
 * The steps build on each other, in order: preview, up, a no-op up, an edit
 * Nix ignores (no change), an edit of a file the runners read (rebuild and
 * VM replacement) and its revert (the earlier store paths), drift
 * after `kill -9` of a VM (refresh, then up), an out-link deleted by hand
 * (refresh, then up), adding a TAP VM, then removing the first TAP VM from the
 * config, moving the checkout, destroy, stack rm; then an `up` killed midway,
 * cancel, up, destroy. Right after the no-op up: a skipped KVM check (a
 * different host fact) changes no plan.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { constants } from "../../components/constants";
import { parseCidr } from "../../components/net";
import { planTaps } from "../../components/plan";
import { EngineProject, engineTools, stackName, type EngineJson, type ToolsBuild } from "../helpers/engine";
import { canUseNetns } from "../helpers/netns";
import { haveCommand, inCi, requireTools } from "../helpers/tools";

const needs: Array<string | [string, () => boolean]> = [
    "go",
    "nix",
    "qemu-system-x86_64",
    "ip",
    "nft",
    "curl",
    "jq",
    "socat",
    "ssh-keygen",
    "busybox",
    ["root (network namespaces, the bridge and TAP devices)", canUseNetns],
    ["/dev/net/tun", () => fs.existsSync("/dev/net/tun")],
];
const ready = needs.every((n) => (typeof n === "string" ? haveCommand(n) : n[1]()));

const bridge = constants.network.bridge;
/** The eval VM's TAP slot is its variant's (components/plan.ts). */
const evalSlot = planTaps([{ name: "eval", variant: "eval" }], parseCidr(constants.network.subnet)).eval!;
const tapDevice = evalSlot.device;
const vmNames = ["base", "eval"];
/** Resources of the ci stack: stack, StateDir (+dir), TapBridge (+bridge, +1 TAP), SshKey (+keygen), 2 x (MicroVm, NixBuild, build, process). */
const ciResourceCount = 16;

/** QEMUs running a VM (named by -name), not the KVM probe boot or a `--version`. */
function vmQemus(processes: Array<{ args: string }>): Array<{ args: string }> {
    return processes.filter((x) => /qemu-system-\S+ .*-name /.test(x.args));
}

/** No process, no link but lo, no nft table and no Nix out-link of the stack in the namespace. */
function assertNothingOnHost(q: EngineProject): void {
    assert.deepEqual(q.processes(), []);
    assert.deepEqual(q.ns.links().map((l) => l.ifname), ["lo"]);
    assert.deepEqual(q.nftTables(), []);
    assert.deepEqual(q.outLinks(), []);
}

/** The store path each VM runs (its process's runner), from the state. */
async function runners(q: EngineProject): Promise<Record<string, string>> {
    const state = await q.exportState();
    const out: Record<string, string> = {};
    for (const r of (state.deployment?.resources ?? []) as Array<{ urn: string; outputs?: { runner?: string } }>) {
        const m = /::vm-([a-z0-9-]+)-process$/.exec(r.urn);
        if (m && r.outputs?.runner) out[m[1]!] = r.outputs.runner;
    }
    return out;
}

/** Steps that change something, as op and name (the URN's last part). */
function changed(json: EngineJson): Array<{ op: string; name: string }> {
    return json.steps.filter((s) => s.op !== "same" && s.op !== "refresh").map((s) => ({ op: s.op, name: s.urn.split("::").pop()! }));
}

/** The messages of the engine's diagnostic events about the resource whose URN ends so. */
function diagnostics(stdout: string, urnSuffix: string): string[] {
    const messages: string[] = [];
    for (const line of stdout.split("\n")) {
        if (!line.includes('"diagnosticEvent"')) continue;
        try {
            const event = (JSON.parse(line) as { diagnosticEvent?: { urn?: string; message?: string } }).diagnosticEvent;
            if (event?.urn?.endsWith(urnSuffix) && event.message) messages.push(event.message.trim());
        } catch {
            // Not an event line.
        }
    }
    return messages;
}

function summary(json: EngineJson): Record<string, number> {
    return json.changeSummary;
}

/** Steps that change something, as "op name" (the URN's last part). */
function changes(json: EngineJson): string[] {
    return changed(json)
        .map((s) => `${s.op} ${s.name}`)
        .sort();
}

describe("the real Pulumi engine on the ci stack", { concurrency: false }, () => {
    let tools: ToolsBuild | undefined;
    let p: EngineProject | undefined;
    const project = (): EngineProject => {
        assert.ok(p, "the engine project was not set up");
        return p;
    };

    before(async () => {
        if (!ready) return;
        tools = engineTools();
        p = await EngineProject.create(tools);
    });

    after(async () => {
        if (p) await p.dispose();
    });

    it("runs the engine built from Go modules (tools/build.sh), at its pinned version", async (t) => {
        if (!requireTools(t, needs)) return;
        const r = await project().pulumiOk(["version"]);
        assert.equal(r.stdout.trim(), tools!.pulumi);
    });

    it("pulumi preview lists the planned resources and creates nothing", async (t) => {
        if (!requireTools(t, needs)) return;
        const q = project();
        await q.pulumiOk(["stack", "init", stackName]);
        const { json } = await q.pulumiJson(["preview", "--stack", stackName]);
        assert.deepEqual(summary(json), { create: ciResourceCount });
        const planned = changes(json);
        const expected = ["pcp-eval-ci", "state", "state-dir", "network", "network-bridge", `network-${tapDevice}`, "ssh-key", "ssh-key-keygen"];
        for (const n of vmNames) expected.push(`vm-${n}`, `vm-${n}-runner`, `vm-${n}-runner-build`, `vm-${n}-process`);
        assert.deepEqual(planned, expected.map((n) => `create ${n}`).sort());
        // Nothing exists: no process, no device, no table, no out-link, no resource in the state.
        assertNothingOnHost(q);
        const state = await q.exportState();
        assert.equal(state.deployment?.resources?.length ?? 0, 0);
    });

    it("pulumi up --yes gives all outputs; every pmproxy URL answers, the VMs run, the bridge exists", async (t) => {
        if (!requireTools(t, needs)) return;
        const q = project();
        const { json, result } = await q.pulumiJson(["up", "--yes", "--stack", stackName]);
        assert.deepEqual(summary(json), { create: ciResourceCount });
        // vm.sh's progress reaches the engine as it comes, on each VM process's row (the plugin logs it with the URN).
        for (const name of vmNames) {
            const lines = diagnostics(result.stdout, `::vm-${name}-process`);
            assert.ok(lines.some((l) => l.includes(`vm ${name}: started pid`)), `start progress of ${name}: ${lines.join(" | ")}`);
            assert.ok(lines.some((l) => /phase \S+: ready after/.test(l)), `readiness progress of ${name}: ${lines.join(" | ")}`);
        }
        const out = await q.outputs();
        assert.deepEqual(Object.keys(out).sort(), ["consolePorts", "pmcdEndpoints", "pmproxyUrls", "sshCommands", "stateDir", "summary", "targets"]);
        const urls = out.pmproxyUrls as Record<string, string>;
        assert.deepEqual(Object.keys(urls).sort(), vmNames);
        assert.equal(urls.eval, `http://${evalSlot.address}:${constants.ports.pmproxy}`);
        for (const [name, url] of Object.entries(urls)) {
            assert.equal(q.httpStatus(`${url}/pmapi/context`), 200, `pmproxy of ${name} at ${url}`);
        }
        const targets = out.targets as Record<string, { networking: string; pmcd: { host: string; port: number } }>;
        assert.equal(targets.base?.networking, "user");
        assert.equal(targets.eval?.networking, "tap");
        for (const name of vmNames) assert.equal(q.vmStatus(name).running, true, `${name} runs`);
        assert.equal(vmQemus(q.processes()).length, 2);
        const br = q.ns.link(bridge);
        assert.ok(br, `${bridge} exists in the namespace`);
        assert.equal(q.ns.link(tapDevice)?.master, bridge);
        const addrs = q.ns.ip(["-j", "addr", "show", "dev", bridge]);
        assert.match(addrs, new RegExp(`"local":"${constants.network.gateway.replace(/\./g, "\\.")}"`));
        assert.ok(q.nftTables().some((l) => l.endsWith(` ${constants.network.nftTable}`)), q.nftTables().join("; "));
        assert.equal(q.outLinks().length, 2);
    });

    it("a second pulumi up changes nothing", async (t) => {
        if (!requireTools(t, needs)) return;
        const q = project();
        const pids = vmNames.map((n) => q.vmStatus(n).pid);
        const { json } = await q.pulumiJson(["up", "--yes", "--expect-no-changes", "--stack", stackName]);
        assert.deepEqual(summary(json), { same: ciResourceCount });
        assert.deepEqual(vmNames.map((n) => q.vmStatus(n).pid), pids);
    });

    it("a host fact replaces nothing: with the KVM check skipped (no verdict at all), the plan is unchanged", async (t) => {
        if (!requireTools(t, needs)) return;
        const q = project();
        // Before issue 15 the verdict was built into every runner: skipping the check (KVM assumed)
        // on this host, where the probe says TCG, rebuilt every runner and replaced every VM.
        await q.pulumiOk(["config", "set", "pcp-eval:skipPreflight", "true", "--stack", stackName]);
        try {
            const { json } = await q.pulumiJson(["preview", "--expect-no-changes", "--stack", stackName]);
            assert.deepEqual(summary(json), { same: ciResourceCount });
        } finally {
            await q.pulumiOk(["config", "rm", "pcp-eval:skipPreflight", "--stack", stackName]);
        }
        const { json } = await q.pulumiJson(["preview", "--expect-no-changes", "--stack", stackName]);
        assert.deepEqual(summary(json), { same: ciResourceCount });
    });

    // The runners read test/fixtures/vm/microvm-run.tail.sh (a shell file,
    // outside the ci flake, through an impure path); the store paths before it is edited.
    let originalRunners: Record<string, string> = {};
    const tail = (q: EngineProject): string => path.join(q.projectDir, "test", "fixtures", "vm", "microvm-run.tail.sh");
    let tailBefore: Buffer | undefined;

    it("an edit Nix ignores (a README in the flake, one beside the files the runners read) changes nothing", async (t) => {
        if (!requireTools(t, needs)) return;
        const q = project();
        originalRunners = await runners(q);
        assert.deepEqual(Object.keys(originalRunners).sort(), vmNames);
        fs.writeFileSync(path.join(q.projectDir, "test", "fixtures", "ci-flake", "README.md"), "The ci stack's flake.\n");
        fs.appendFileSync(path.join(q.projectDir, "test", "fixtures", "vm", "README.md"), "\nEdited by the engine test.\n");
        const { json } = await q.pulumiJson(["preview", "--expect-no-changes", "--stack", stackName]);
        assert.deepEqual(summary(json), { same: ciResourceCount });
    });

    it("an edit of a non-.nix file the runners read rebuilds both runners and replaces only their VMs, the plan naming the store paths", async (t) => {
        if (!requireTools(t, needs)) return;
        const q = project();
        const pids = Object.fromEntries(vmNames.map((n) => [n, q.vmStatus(n).pid]));
        tailBefore = fs.readFileSync(tail(q));
        fs.appendFileSync(tail(q), "# edited by the engine test\n");

        const preview = await q.pulumiJson(["preview", "--stack", stackName]);
        const rebuilt = vmNames.flatMap((n) => [`vm-${n}-process`, `vm-${n}-runner-build`]).sort();
        assert.deepEqual([...new Set(changed(preview.json).map((s) => s.name))].sort(), rebuilt);
        assert.ok(changed(preview.json).every((s) => s.op.includes("replace")), JSON.stringify(changed(preview.json).map((s) => s.op)));
        const planned: Record<string, string> = {};
        for (const n of vmNames) {
            const step = preview.json.steps.find((s) => s.op === "replace" && s.urn.endsWith(`::vm-${n}-process`));
            assert.ok(step, `a replace step for vm-${n}-process`);
            assert.ok(step.replaceReasons?.includes("runner"), `replaced because of its runner: ${JSON.stringify(step.replaceReasons)}`);
            assert.equal(step.oldInputs?.runner, originalRunners[n]);
            const next = String(step.newInputs?.runner);
            assert.match(next, /^\/nix\/store\/[a-z0-9]{32}-pcp-eval-ci-runner-/);
            assert.notEqual(next, originalRunners[n]);
            planned[n] = next;
        }

        const { json } = await q.pulumiJson(["up", "--yes", "--stack", stackName]);
        assert.deepEqual([...new Set(changed(json).map((s) => s.name))].sort(), rebuilt);
        assert.deepEqual(await runners(q), planned, "the VMs run the store paths the preview named");
        const urls = (await q.outputs()).pmproxyUrls as Record<string, string>;
        for (const n of vmNames) {
            const status = q.vmStatus(n);
            assert.equal(status.running, true);
            assert.notEqual(status.pid, pids[n], `${n} was restarted on its new runner`);
            assert.equal(q.httpStatus(`${urls[n]}/pmapi/context`), 200, `pmproxy of ${n}`);
        }
        assert.equal(q.outLinks().length, 2);
    });

    it("reverting the edit gives the earlier store paths again", async (t) => {
        if (!requireTools(t, needs)) return;
        const q = project();
        assert.ok(tailBefore, "the edit step ran");
        fs.writeFileSync(tail(q), tailBefore);
        const preview = await q.pulumiJson(["preview", "--stack", stackName]);
        for (const n of vmNames) {
            const step = preview.json.steps.find((s) => s.op === "replace" && s.urn.endsWith(`::vm-${n}-process`));
            assert.equal(step?.newInputs?.runner, originalRunners[n]);
        }
        await q.pulumiJson(["up", "--yes", "--stack", stackName]);
        assert.deepEqual(await runners(q), originalRunners);
        const urls = (await q.outputs()).pmproxyUrls as Record<string, string>;
        for (const n of vmNames) assert.equal(q.httpStatus(`${urls[n]}/pmapi/context`), 200, `pmproxy of ${n}`);
        await q.pulumiOk(["up", "--yes", "--expect-no-changes", "--stack", stackName]);
    });

    it("after kill -9 of a VM, pulumi refresh shows the drift and pulumi up brings it back", async (t) => {
        if (!requireTools(t, needs)) return;
        const q = project();
        const before = q.vmStatus("eval");
        assert.ok(before.pid);
        process.kill(before.pid, "SIGKILL");
        const other = q.vmStatus("base").pid;

        const preview = await q.pulumiJson(["refresh", "--preview-only", "--stack", stackName]);
        assert.deepEqual(changes(preview.json), ["delete vm-eval-process"]);
        const refreshed = await q.pulumiJson(["refresh", "--yes", "--stack", stackName]);
        assert.equal(summary(refreshed.json).delete, 1);
        const state = await q.exportState();
        assert.ok(!(state.deployment?.resources ?? []).some((r) => r.urn.endsWith("::vm-eval-process")), "the dead VM left the state");

        const { json } = await q.pulumiJson(["up", "--yes", "--stack", stackName]);
        assert.deepEqual(changes(json), ["create vm-eval-process"]);
        const after = q.vmStatus("eval");
        assert.equal(after.running, true);
        assert.notEqual(after.pid, before.pid);
        assert.equal(q.vmStatus("base").pid, other, "the other VM was not touched");
        const urls = (await q.outputs()).pmproxyUrls as Record<string, string>;
        assert.equal(q.httpStatus(`${urls.eval}/pmapi/context`), 200);
    });

    it("an out-link deleted by hand: refresh reports it, up restores it, the VM keeps running", async (t) => {
        if (!requireTools(t, needs)) return;
        const q = project();
        const pid = q.vmStatus("eval").pid;
        const link = q.outLinks().find((l) => l.includes("/vms/eval/"));
        assert.ok(link, q.outLinks().join(", "));
        const target = fs.readlinkSync(link);
        fs.unlinkSync(link);

        await q.pulumiJson(["refresh", "--yes", "--stack", stackName]);
        // Refresh recorded what it found on the host: the build is degraded, and says why.
        const state = await q.exportState();
        const degraded = (state.deployment?.resources ?? [])
            .map((r) => r as { urn: string; outputs?: { live?: string; drift?: string } })
            .filter((r) => r.outputs?.live === "degraded");
        assert.deepEqual(degraded.map((r) => r.urn.split("::").pop()), ["vm-eval-runner-build"], "refresh saw the lost GC root, and nothing else");
        assert.match(degraded[0]!.outputs!.drift ?? "", /storePath: recorded ".*", now null/);
        const { json } = await q.pulumiJson(["up", "--yes", "--stack", stackName]);
        assert.deepEqual(changes(json), ["update vm-eval-runner-build"]);
        assert.equal(fs.readlinkSync(link), target, "up made the GC root again, to the same store path");
        assert.equal(q.vmStatus("eval").pid, pid, "the VM kept running");
        await q.pulumiOk(["up", "--yes", "--expect-no-changes", "--stack", stackName]);
    });

    it("adding a TAP VM creates only its resources; removing the first TAP VM deletes only its own, the other keeps its pid, TAP and address", async (t) => {
        if (!requireTools(t, needs)) return;
        const q = project();
        const pids = Object.fromEntries(vmNames.map((n) => [n, q.vmStatus(n).pid]));
        await q.pulumiOk(["config", "set", "--path", "pcp-eval:vms[2]", "bpf:tap", "--stack", stackName]);
        const bpfSlot = planTaps([{ name: "bpf", variant: "bpf" }], parseCidr(constants.network.subnet)).bpf!;
        const added = await q.pulumiJson(["up", "--yes", "--stack", stackName]);
        assert.deepEqual(changes(added.json), [
            `create network-${bpfSlot.device}`,
            "create vm-bpf",
            "create vm-bpf-process",
            "create vm-bpf-runner",
            "create vm-bpf-runner-build",
        ]);
        for (const n of vmNames) assert.equal(q.vmStatus(n).pid, pids[n], `adding a VM left ${n} alone`);
        const bpfPid = q.vmStatus("bpf").pid;
        const bpfUrl = ((await q.outputs()).pmproxyUrls as Record<string, string>).bpf;
        assert.equal(bpfUrl, `http://${bpfSlot.address}:${constants.ports.pmproxy}`);
        assert.equal(q.httpStatus(`${bpfUrl}/pmapi/context`), 200);

        // eval is the first of the two TAP VMs (vms[1]); bpf follows it in the list.
        await q.pulumiOk(["config", "rm", "--path", "pcp-eval:vms[1]", "--stack", stackName]);
        const { json } = await q.pulumiJson(["up", "--yes", "--stack", stackName]);
        assert.deepEqual(changes(json), [
            `delete network-${tapDevice}`,
            "delete vm-eval",
            "delete vm-eval-process",
            "delete vm-eval-runner",
            "delete vm-eval-runner-build",
        ]);
        assert.equal(q.vmStatus("eval").running, false);
        assert.equal(q.vmStatus("base").pid, pids.base);
        assert.equal(q.vmStatus("bpf").pid, bpfPid, "the other TAP VM kept its process");
        assert.equal(q.ns.link(tapDevice), undefined);
        assert.equal(q.ns.link(bpfSlot.device)?.master, bridge);
        assert.ok(q.ns.link(bridge));
        const urls = (await q.outputs()).pmproxyUrls as Record<string, string>;
        assert.deepEqual(Object.keys(urls).sort(), ["base", "bpf"]);
        assert.equal(urls.bpf, bpfUrl, "and its address");
        assert.equal(q.httpStatus(`${urls.bpf}/pmapi/context`), 200);
    });

    it("the checkout moved elsewhere (with its state): up replaces nothing and every VM keeps running", async (t) => {
        if (!requireTools(t, needs)) return;
        const q = project();
        const names = Object.keys((await q.outputs()).pmproxyUrls as Record<string, string>).sort();
        const pids = Object.fromEntries(names.map((n) => [n, q.vmStatus(n).pid]));
        q.moveProject("moved");
        // A refresh before any up: the recorded project dir is gone, so the providers' reads run in the new one
        // (the plugin's working directory) and find every VM, the bridge and the TAPs where they are.
        await q.pulumiOk(["refresh", "--yes", "--stack", stackName]);
        const kept = ((await q.exportState()).deployment?.resources ?? []).filter((r) => r.type.endsWith(":MicroVmProcess")).map((r) => r.urn.split("::").pop()).sort();
        assert.deepEqual(kept, names.map((n) => `vm-${n}-process`), "refresh after the move kept every VM process");
        // Only where commands run (dir) and the absolute paths in host commands change: updates.
        // Both run before any assertion, so the state follows the move whatever the plan said (later steps run here).
        const preview = await q.pulumiJson(["preview", "--stack", stackName]);
        const { json } = await q.pulumiJson(["up", "--yes", "--stack", stackName]);
        assert.deepEqual(changed(preview.json).filter((s) => s.op !== "update"), [], JSON.stringify(changed(preview.json)));
        assert.deepEqual(changed(json).filter((s) => s.op !== "update"), [], JSON.stringify(changed(json)));
        for (const n of names) assert.equal(q.vmStatus(n).pid, pids[n], `${n} kept running`);
        const urls = (await q.outputs()).pmproxyUrls as Record<string, string>;
        for (const n of names) assert.equal(q.httpStatus(`${urls[n]}/pmapi/context`), 200, `pmproxy of ${n}`);
        // The out-links (GC roots) are in the new place, made again by the builds' updates.
        assert.equal(q.outLinks().length, names.length);
        await q.pulumiOk(["up", "--yes", "--expect-no-changes", "--stack", stackName]);
    });

    it("pulumi destroy --yes leaves no process, link, nft table or out-link; pulumi stack rm works", async (t) => {
        if (!requireTools(t, needs)) return;
        const q = project();
        await q.pulumiOk(["destroy", "--yes", "--stack", stackName]);
        assertNothingOnHost(q);
        // Nothing of the stack on disk either: logs, key, records and the state directory itself are gone.
        assert.equal(fs.existsSync(q.stateDir), false, `${q.stateDir} is left after destroy`);
        await q.pulumiOk(["stack", "rm", "--yes", stackName]);
        const ls = JSON.parse((await q.pulumiOk(["stack", "ls", "--json"])).stdout) as Array<{ name: string }>;
        assert.deepEqual(ls.map((s) => s.name), []);
    });

    it("an up killed midway: cancel, then up converges and destroy removes everything", async (t) => {
        if (!requireTools(t, needs)) return;
        const q = project();
        q.restoreStackConfig();
        await q.pulumiOk(["stack", "init", stackName]);
        const run = q.startPulumi(["up", "--yes", "--stack", stackName]);
        // Midway: once vm.sh has recorded a VM's runner (its NixBuilds, the key
        // and the bridge are done or under way). Not "a qemu-system process":
        // the fixture runner's KVM probe boot is one, and it ends by itself.
        let started: { name: string; pid: number } | undefined;
        while (started === undefined && !run.exited()) {
            for (const name of vmNames) {
                const status = q.vmStatus(name);
                if (status.running && status.pid !== undefined) started = { name, pid: status.pid };
            }
            if (started === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
        }
        await run.killGroup();
        assert.ok(started, `a VM was started before the kill:\n${run.output().slice(-3000)}`);
        // The engine starts its plugins in process groups of their own, so the
        // killed CLI's language host and dynamic provider (and the scripts they
        // run) outlive it until their health checks notice (minutes for this
        // language host). They are not stack resources and all share the CLI's
        // session: end them, as a user's shell would. VM runners lead sessions
        // of their own and stay.
        for (const orphan of q.processes().filter((x) => x.sid === run.pid)) {
            try {
                process.kill(orphan.pid, "SIGKILL");
            } catch {
                // already gone
            }
        }
        assert.equal(q.vmStatus(started.name).pid, started.pid, `VM ${started.name} outlives the killed up`);

        // The killed update left its lock: the next update is refused until `pulumi cancel`.
        const locked = await q.pulumi(["up", "--yes", "--stack", stackName]);
        assert.notEqual(locked.status, 0);
        assert.match(locked.stdout + locked.stderr, /locked/);
        await q.pulumiOk(["cancel", "--yes", "--stack", stackName]);

        const { json } = await q.pulumiJson(["up", "--yes", "--stack", stackName]);
        assert.ok((summary(json).create ?? 0) > 0);
        const urls = (await q.outputs()).pmproxyUrls as Record<string, string>;
        for (const [name, url] of Object.entries(urls)) {
            assert.equal(q.httpStatus(`${url}/pmapi/context`), 200, `pmproxy of ${name}`);
        }
        assert.equal(vmQemus(q.processes()).length, 2, "one QEMU per VM, none left over");
        await q.pulumiOk(["up", "--yes", "--expect-no-changes", "--stack", stackName]);

        await q.pulumiOk(["destroy", "--yes", "--stack", stackName]);
        assertNothingOnHost(q);
        const state = await q.exportState();
        assert.equal(state.deployment?.resources?.length ?? 0, 0);
        await q.pulumiOk(["stack", "rm", "--yes", stackName]);
    });

    it("is not skipped in CI", () => {
        if (inCi) assert.ok(ready, "CI must have every tool the engine test needs");
    });
});
