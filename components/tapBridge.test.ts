/**
 * TapBridge under Pulumi's mocks: what it asks net.sh for; and the provider
 * plugin's NetBridge and NetTap (provider/net.go) against a stand-in net.sh:
 * where and with what they run it (the real script is exercised in
 * test/integration/net.test.ts).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { recordProgram, resolve } from "../test/helpers/mocks";
import { startProviderPlugin, type ProviderPlugin } from "../test/helpers/providerPlugin";
import { parseConfig } from "./config";
import { constants } from "./constants";
import { TapBridge, type NetBridgeInputs, type NetTapInputs } from "./tapBridge";

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

describe("the plugin's NetBridge and NetTap", () => {
    let root = "";
    /** Where the plugin runs (the engine starts it in the project directory): the checkout's place after a move. */
    let current = "";
    let log = "";
    let plugin: ProviderPlugin;
    // A stand-in net.sh: records its working directory and arguments, answers one JSON line.
    const standIn = 'printf "%s\\n" "$PWD" "$@" >> "$NET_ARGS_LOG"\necho "{}"\n';
    const project = (name: string): string => {
        const dir = path.join(root, name);
        fs.mkdirSync(path.join(dir, "host"), { recursive: true });
        fs.writeFileSync(path.join(dir, "host", "net.sh"), standIn);
        return dir;
    };
    /** The stand-in's lines for what `action` ran: its working directory, then its arguments. */
    async function ran(action: () => Promise<unknown>): Promise<string[]> {
        fs.rmSync(log, { force: true });
        await action();
        return fs.readFileSync(log, "utf8").trimEnd().split("\n");
    }
    const argAfter = (lines: string[], flag: string): string => lines[lines.indexOf(flag) + 1]!;

    before(async () => {
        root = fs.mkdtempSync(path.join(os.tmpdir(), "pe-tapbridge-"));
        current = project("current");
        log = path.join(root, "args.log");
        plugin = await startProviderPlugin({ cwd: current, env: { ...process.env, NET_ARGS_LOG: log } });
    });

    after(async () => {
        await plugin?.close();
        if (root) fs.rmSync(root, { recursive: true, force: true });
    });

    it("hands net.sh an absolute state dir (its sudo helper refuses a relative one), and runs where the checkout is now once the recorded one is gone", async () => {
        const bridge = plugin.resource("NetBridge");
        const checkout = project("project");
        const inputs: NetBridgeInputs = {
            dir: checkout,
            scriptPath: path.join("host", "net.sh"),
            stateDir: path.join(".pcp-eval-state", "dev", "net"),
            bridge: constants.network.bridge,
            gatewayCidr,
            nftTable: constants.network.nftTable,
            sudo: true,
        };
        assert.deepEqual((await bridge.check({}, inputs)).failures, []);
        let created: { id: string; outs: Record<string, unknown> } | undefined;
        const first = await ran(async () => (created = await bridge.create(inputs)));
        assert.equal(first[0], checkout);
        assert.equal(first[1], "bridge-up");
        assert.equal(argAfter(first, "--state-dir"), path.join(checkout, ".pcp-eval-state", "dev", "net"));
        assert.equal(argAfter(first, "--bridge"), constants.network.bridge);
        assert.equal(argAfter(first, "--gateway-cidr"), gatewayCidr);
        assert.equal(argAfter(first, "--nft-table"), constants.network.nftTable);
        assert.ok(first.includes("--sudo"));
        assert.equal(created?.outs.live, "ok");

        // The checkout moves (no up yet): the delete runs in the plugin's directory, the project's new place.
        fs.rmSync(checkout, { recursive: true });
        const second = await ran(() => bridge.delete(created!.id, { ...inputs, live: "ok" }));
        assert.equal(fs.realpathSync(second[0]!), fs.realpathSync(current));
        assert.equal(second[1], "bridge-down");
        assert.equal(fs.realpathSync(path.dirname(path.dirname(path.dirname(argAfter(second, "--state-dir"))))), fs.realpathSync(current));
        assert.ok(second.includes("--sudo"));
    });

    it("a TAP runs tap-up with its owner and multi-queue flag, and a TAP whose checkout is gone is taken down from where the plugin runs", async () => {
        const tap = plugin.resource("NetTap");
        const checkout = project("project-tap");
        const inputs: NetTapInputs = {
            dir: checkout,
            scriptPath: path.join("host", "net.sh"),
            stateDir: path.join(".pcp-eval-state", "dev", "net"),
            bridge: constants.network.bridge,
            tap: `${constants.network.tapPrefix}1`,
            owner: "pcp-tester",
            multiQueue: true,
            sudo: false,
        };
        const up = await ran(() => tap.create(inputs));
        assert.deepEqual(up, [
            checkout, "tap-up", "--state-dir", path.join(checkout, ".pcp-eval-state", "dev", "net"),
            "--bridge", constants.network.bridge, "--tap", `${constants.network.tapPrefix}1`, "--owner", "pcp-tester", "--multi-queue", "on",
        ]);
        fs.rmSync(checkout, { recursive: true });
        const down = await ran(() => tap.delete("id", { ...inputs, live: "ok" }));
        assert.equal(fs.realpathSync(down[0]!), fs.realpathSync(current));
        assert.deepEqual(down.slice(1), ["tap-down", "--state-dir", path.join(current, ".pcp-eval-state", "dev", "net"), "--tap", `${constants.network.tapPrefix}1`]);
    });

    it("check names each missing or non-text input", async () => {
        const failures = (await plugin.resource("NetTap").check({}, { scriptPath: "host/net.sh", stateDir: "", bridge: 3, owner: "u", dir: 1 })).failures;
        assert.deepEqual(failures, [
            { property: "stateDir", reason: "must not be empty" },
            { property: "bridge", reason: "must be a string, not 3" },
            { property: "tap", reason: "is required" },
            { property: "dir", reason: "must be a string, not 1" },
        ]);
    });
});
