/**
 * A stack made before pcp-eval's provider plugin (its host resources on
 * Node.js dynamic providers, main at 886765d) keeps its VMs, bridge and TAP
 * when the checkout moves to the plugin: under the real engine, on the ci
 * stack in a network namespace of the test's own (test/helpers/engine.ts).
 * The engine asks the plugin to diff each resource recorded under its old
 * type (components/providerPlugin.ts's alias); as the properties are the
 * same, nothing is replaced: the same VM processes run on, and the state
 * names the new types.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { EngineProject, engineTools, repoRoot, stackName, type EngineJson } from "../helpers/engine";
import { canUseNetns } from "../helpers/netns";
import { requireTools } from "../helpers/tools";

/** The last main whose host resources were dynamic resources. */
const beforePlugin = "886765d";

function hasCommit(commit: string): boolean {
    try {
        execFileSync("git", ["-C", repoRoot, "cat-file", "-e", `${commit}^{commit}`], { stdio: "ignore" });
        return true;
    } catch {
        return false;
    }
}

const needs: Array<string | [string, () => boolean]> = [
    "go", "git", "nix", "qemu-system-x86_64", "ip", "nft", "curl", "jq", "socat", "ssh-keygen", "busybox",
    ["root (network namespaces, the bridge and TAP devices)", canUseNetns],
    ["/dev/net/tun", () => fs.existsSync("/dev/net/tun")],
    [`commit ${beforePlugin} in this clone's history (a shallow clone lacks it)`, () => hasCommit(beforePlugin)],
];

interface StateResource { urn: string; type: string; id?: string; outputs?: { pid?: number } }

async function hostResources(q: EngineProject): Promise<StateResource[]> {
    const state = await q.exportState();
    return ((state.deployment?.resources ?? []) as StateResource[]).filter((r) => /:(HostCommand|HostState|MicroVmProcess|NetBridge|NetTap)$/.test(r.type));
}

/** "op name" of every step that changes a resource (providers aside: the old one's removal is checked in the state). */
function changes(json: EngineJson): string[] {
    return json.steps
        .filter((s) => s.op !== "same" && s.op !== "refresh" && !s.urn.includes("::pulumi:providers:"))
        .map((s) => `${s.op} ${s.urn.split("::").pop()}`)
        .sort();
}

test("a stack made by the dynamic providers keeps its VMs, bridge and TAP when the plugin takes over", async (t) => {
    if (!requireTools(t, needs)) return;
    const source = fs.mkdtempSync(path.join(os.tmpdir(), "pe10-source-"));
    let q: EngineProject | undefined;
    try {
        execFileSync("bash", ["-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "archive", repoRoot, beforePlugin, source]);
        q = await EngineProject.create(engineTools(), "pe10", { sourceRoot: source });
        await q.pulumiOk(["stack", "init", stackName]);
        await q.pulumiJson(["up", "--yes", "--stack", stackName]);
        const before = await hostResources(q);
        assert.ok(before.length >= 6, `host resources before: ${before.map((r) => r.type).join(", ")}`);
        assert.ok(before.every((r) => r.type.startsWith("pulumi-nodejs:dynamic/pcp-eval:")), "made by the dynamic providers");
        const pids = Object.fromEntries(["base", "eval"].map((vm) => [vm, q!.vmStatus(vm).pid]));
        assert.ok(Object.values(pids).every((pid) => typeof pid === "number"), `both VMs run: ${JSON.stringify(pids)}`);

        q.upgradeToCheckout();
        const { json: preview } = await q.pulumiJson(["preview", "--stack", stackName]);
        // No host resource is created, replaced or deleted. The runner builds' command gained
        // --expected since (nix-build.sh makes the out-link of a built store path without evaluating):
        // an update of each build that remakes its out-link, nothing more.
        const buildUpdates = ["update vm-base-runner-build", "update vm-eval-runner-build"];
        assert.deepEqual(changes(preview), buildUpdates);
        const { json: up } = await q.pulumiJson(["up", "--yes", "--stack", stackName]);
        assert.deepEqual(changes(up), buildUpdates);

        const after = await hostResources(q);
        assert.deepEqual(after.map((r) => r.type.replace("pcp-eval:index:", "")).sort(), before.map((r) => r.type.replace("pulumi-nodejs:dynamic/pcp-eval:", "")).sort());
        assert.ok(after.every((r) => r.type.startsWith("pcp-eval:index:")), "served by the plugin now");
        assert.deepEqual(after.map((r) => r.id).sort(), before.map((r) => r.id).sort(), "the same resources (ids)");
        for (const vm of ["base", "eval"]) assert.equal(q.vmStatus(vm).pid, pids[vm], `${vm} runs on, the same process`);
        const state = await q.exportState();
        assert.deepEqual((state.deployment?.resources ?? []).filter((r) => r.type.includes("pulumi-nodejs")).map((r) => r.type), []);

        await q.pulumiOk(["up", "--yes", "--expect-no-changes", "--stack", stackName]);
        await q.pulumiOk(["destroy", "--yes", "--stack", stackName]);
        assert.deepEqual(await hostResources(q), []);
        assert.deepEqual(q.ns.links().map((l) => l.ifname), ["lo"]);
        assert.deepEqual(q.processes(), []);
    } finally {
        if (q) await q.dispose();
        fs.rmSync(source, { recursive: true, force: true });
    }
});
