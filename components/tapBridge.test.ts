/**
 * TapBridge under Pulumi's mocks: what it asks net.sh for (the real script is
 * exercised in test/integration/net.test.ts).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { recordProgram, resolve } from "../test/helpers/mocks";
import { parseConfig } from "./config";
import { constants } from "./constants";
import { bridgeProvider, NetBridgeInputs, TapBridge } from "./tapBridge";

const projectDir = "/srv/pcp-eval";
/** The bridge's address on the default subnet, as net.sh gets it. */
const gatewayCidr = `${constants.network.gateway}/${constants.network.subnet.split("/")[1]}`;

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
        assert.equal(bridge.gatewayCidr, gatewayCidr);
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

describe("the bridge provider", () => {
    it("hands net.sh an absolute state dir (its sudo helper refuses a relative one), and runs where the checkout is now once the recorded one is gone", async () => {
        const root = fs.mkdtempSync(path.join(os.tmpdir(), "pe-tapbridge-"));
        try {
            // A stand-in net.sh: records its arguments and working directory, answers one JSON line.
            const project = path.join(root, "project");
            fs.mkdirSync(path.join(project, "host"), { recursive: true });
            fs.writeFileSync(path.join(project, "host", "net.sh"), 'printf "%s\\n" "$PWD" "$@" >> "$NET_ARGS_LOG"\necho "{}"\n');
            const log = path.join(root, "args.log");
            process.env.NET_ARGS_LOG = log;
            const inputs: NetBridgeInputs = {
                dir: project,
                scriptPath: path.join("host", "net.sh"),
                stateDir: path.join(".pcp-eval-state", "dev", "net"),
                bridge: constants.network.bridge,
                gatewayCidr,
                nftTable: constants.network.nftTable,
                sudo: true,
            };
            await bridgeProvider.create!(inputs);
            const first = fs.readFileSync(log, "utf8").split("\n");
            assert.equal(first[0], project);
            assert.equal(first[first.indexOf("--state-dir") + 1], path.join(project, ".pcp-eval-state", "dev", "net"));
            assert.ok(first.includes("--sudo"));

            // The checkout moves (no up yet): the delete runs in the current directory, the project's new place.
            const moved = path.join(root, "moved");
            fs.renameSync(project, moved);
            fs.rmSync(log);
            const cwd = process.cwd();
            process.chdir(moved);
            try {
                await bridgeProvider.delete!("id", { ...inputs, live: "ok" });
            } finally {
                process.chdir(cwd);
            }
            const second = fs.readFileSync(log, "utf8").split("\n");
            assert.equal(fs.realpathSync(second[0]!), fs.realpathSync(moved));
            assert.equal(second[1], "bridge-down");
            assert.equal(fs.realpathSync(path.dirname(path.dirname(path.dirname(second[second.indexOf("--state-dir") + 1]!)))), fs.realpathSync(moved));
        } finally {
            delete process.env.NET_ARGS_LOG;
            fs.rmSync(root, { recursive: true, force: true });
        }
    });
});
