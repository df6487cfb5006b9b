/**
 * TapBridge under Pulumi's mocks: what it asks net.sh for (the real script is
 * exercised in test/integration/net.test.ts).
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { describe, it } from "node:test";
import { recordProgram, resolve } from "../test/helpers/mocks";
import { parseConfig } from "./config";
import { constants } from "./constants";
import { TapBridge } from "./tapBridge";

const projectDir = "/srv/pcp-eval";

function config(vms: string[], useSudo: boolean) {
    const raw: Record<string, unknown> = { bridgeEnabled: true, vms, useSudo };
    const strings = Object.fromEntries(Object.entries(raw).map(([k, v]) => [`pcp-eval:${k}`, typeof v === "string" ? v : JSON.stringify(v)]));
    return parseConfig(strings, "unit", projectDir);
}

async function record(vms: string[], useSudo = false) {
    const cfg = config(vms, useSudo);
    const tapVms = cfg.vms.filter((vm) => vm.tap !== undefined);
    return recordProgram(() => new TapBridge("network", {
        bridge: cfg.bridge!,
        taps: Object.fromEntries(tapVms.map((vm) => [vm.name, { ...vm.tap!, vcpus: vm.vcpus }])),
        tapOwner: "pcp-tester",
        stateDir: cfg.stateDir,
        projectDir,
        useSudo: cfg.useSudo,
    }), { stack: "unit" }).then((r) => ({ ...r, cfg }));
}

describe("TapBridge", () => {
    it("asks net.sh for the configured bridge, gateway and table, under the stack's state dir", async () => {
        const { recording, cfg } = await record(["eval:tap"], true);
        const bridge = recording.byName("network-bridge").inputs;
        // Paths relative to the project, which is the scripts' working directory: a moved checkout replaces nothing.
        assert.equal(bridge.dir, projectDir);
        assert.equal(path.resolve(projectDir, String(bridge.scriptPath)), path.join(projectDir, "host", "net.sh"));
        assert.equal(path.resolve(projectDir, String(bridge.stateDir)), path.join(cfg.stateDir, "net"));
        assert.equal(bridge.bridge, constants.network.bridge);
        assert.equal(bridge.gatewayCidr, `${constants.network.gateway}/${constants.network.subnet.split("/")[1]}`);
        assert.equal(bridge.nftTable, constants.network.nftTable);
        assert.equal(bridge.sudo, true);
    });

    it("makes one TAP resource per TAP VM, after the bridge, multi-queue exactly when the VM has more than one vCPU", async () => {
        const { recording, result } = await record(["eval:tap", "base:tap,vcpus=1", "bpf"]);
        assert.deepEqual(recording.resources.filter((r) => r.name.startsWith("network-pcptap")).map((r) => r.name),
            [`network-${constants.network.tapPrefix}1`, `network-${constants.network.tapPrefix}0`]);
        // Each VM's device is its variant's slot (components/plan.ts): eval 1, base 0.
        const evalTap = recording.byName(`network-${constants.network.tapPrefix}1`);
        const baseTap = recording.byName(`network-${constants.network.tapPrefix}0`);
        assert.equal(evalTap.inputs.multiQueue, constants.vm.vcpus > 1);
        assert.equal(baseTap.inputs.multiQueue, false);
        for (const tap of [evalTap, baseTap]) {
            assert.equal(tap.inputs.owner, "pcp-tester");
            assert.equal(tap.inputs.bridge, constants.network.bridge);
            assert.equal(tap.inputs.sudo, false);
            assert.ok(recording.dependencyNames(tap.name).includes("network-bridge"));
        }
        assert.deepEqual(result.tapDevices, { eval: `${constants.network.tapPrefix}1`, base: `${constants.network.tapPrefix}0` });
        assert.equal(await resolve((result.tapResources.eval as unknown as { tap: string }).tap), `${constants.network.tapPrefix}1`);
    });
});
