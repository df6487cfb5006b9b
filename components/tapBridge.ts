import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { BridgeConfig, TapAttachment } from "./config";
import { constants } from "./constants";
import { absoluteStateDir, projectRelative, projectWorkDir, runJson, sameStateDir } from "./run";

/** A TAP VM's device; `vcpus` decides the TAP's multi_queue flag (the VM's QEMU opens it with queues=<vcpus> when vcpus > 1). */
export type TapDevice = TapAttachment & { vcpus?: number };

export interface TapBridgeArgs {
    bridge: BridgeConfig;
    /** One TAP device per TAP-networked VM, keyed by VM name. */
    taps: Record<string, TapDevice>;
    /** The user that runs the VMs and so must be able to open the TAP devices. */
    tapOwner: string;
    stateDir: string;
    projectDir: string;
    useSudo: boolean;
}

/** Inputs of the bridge resource: plain data, so the provider can be serialized. */
export interface NetBridgeInputs {
    /** Working directory of net.sh (the project); scriptPath and stateDir may be relative to it. */
    dir?: string;
    /** Path of host/net.sh. */
    scriptPath: string;
    stateDir: string;
    bridge: string;
    gatewayCidr: string;
    nftTable: string;
    sudo: boolean;
}

/** Inputs of one TAP device resource. */
export interface NetTapInputs {
    dir?: string;
    scriptPath: string;
    stateDir: string;
    bridge: string;
    tap: string;
    owner: string;
    multiQueue: boolean;
    sudo: boolean;
}

/**
 * What `read` found: "ok", or "degraded" when something net.sh made is missing
 * or changed (after a reboot, a firewall reload that flushed nftables, a TAP
 * detached by hand). A degraded resource diffs as changed, so the next `up`
 * runs the idempotent up verb again, which repairs it.
 */
export type Live = "ok" | "degraded";

export type NetBridgeState = NetBridgeInputs & { live: Live };
export type NetTapState = NetTapInputs & { live: Live };

/** Status JSON of `net.sh status`, as far as read() uses it. */
interface NetStatus {
    recorded: boolean;
    bridge: { exists: boolean; ours: boolean; up?: boolean; addresses?: string[] };
    nft: { exists: boolean | null; ours: boolean | null };
    ipForward: { value: string };
    taps: Array<{ name: string; recorded: boolean; exists: boolean; ours: boolean; master?: string; up?: boolean }>;
}

/**
 * Runs `bash net.sh VERB ARGS...` (components/run.ts: async, stderr streamed)
 * and returns its JSON line. A failure throws net.sh's own error lines (they
 * name the setting and the fix). Status reads are quiet.
 */
function netScript(scriptPath: string, verb: string, stateDir: string, args: string[], sudo: boolean, dir?: string): Promise<Record<string, unknown>> {
    // An absolute state dir: with --sudo, net.sh hands it to its root helper, which refuses a relative one.
    return runJson<Record<string, unknown>>("bash", [scriptPath, verb, "--state-dir", absoluteStateDir(stateDir, dir), ...args, ...(sudo ? ["--sudo"] : [])], {
        cwd: projectWorkDir(dir),
        label: `net.sh ${verb}`,
        echo: verb !== "status",
    });
}

async function bridgeUp(i: NetBridgeInputs): Promise<void> {
    await netScript(i.scriptPath, "bridge-up", i.stateDir, ["--bridge", i.bridge, "--gateway-cidr", i.gatewayCidr, "--nft-table", i.nftTable], i.sudo, i.dir);
}

async function tapUp(i: NetTapInputs): Promise<void> {
    await netScript(i.scriptPath, "tap-up", i.stateDir, ["--bridge", i.bridge, "--tap", i.tap, "--owner", i.owner,
        "--multi-queue", i.multiQueue ? "on" : "off"], i.sudo, i.dir);
}

/** Exported for the integration test, which drives it inside a test network namespace. */
export const bridgeProvider: pulumi.dynamic.ResourceProvider<NetBridgeInputs, NetBridgeState> = {
    async create(inputs) {
        await bridgeUp(inputs);
        return { id: `${inputs.stateDir}#${inputs.bridge}`, outs: { ...inputs, live: "ok" } };
    },
    async read(id, props) {
        if (props === undefined) return { id };
        const s = (await netScript(props.scriptPath, "status", props.stateDir, ["--bridge", props.bridge, "--nft-table", props.nftTable], props.sudo, props.dir)) as unknown as NetStatus;
        // Nothing of ours left and nothing recorded (taken down by hand): gone.
        // A same-named device that is not ours: gone too; the next up refuses it with a clear error.
        if ((!s.recorded && !s.bridge.exists) || (s.bridge.exists && !s.bridge.ours)) return { id: "", props: undefined };
        const healthy = s.bridge.ours && s.bridge.up === true && (s.bridge.addresses ?? []).includes(props.gatewayCidr)
            && s.nft.ours !== false && s.ipForward.value === "1";
        return { id, props: { ...props, live: healthy ? "ok" : "degraded" } };
    },
    async diff(_id, olds, news) {
        const replaces = (["stateDir", "bridge", "nftTable"] as const).filter((k) => (k === "stateDir" ? !sameStateDir(olds, news) : olds[k] !== news[k]));
        const changes = replaces.length > 0 || olds.live !== "ok"
            || (["scriptPath", "gatewayCidr", "sudo", "dir"] as const).some((k) => olds[k] !== news[k]);
        return { changes, replaces, deleteBeforeReplace: true };
    },
    async update(_id, _olds, news) {
        await bridgeUp(news);
        return { outs: { ...news, live: "ok" } };
    },
    async delete(_id, props) {
        await netScript(props.scriptPath, "bridge-down", props.stateDir, [], props.sudo, props.dir);
    },
};

/** Exported for the integration test, which drives it inside a test network namespace. */
export const tapProvider: pulumi.dynamic.ResourceProvider<NetTapInputs, NetTapState> = {
    async create(inputs) {
        await tapUp(inputs);
        return { id: `${inputs.stateDir}#${inputs.tap}`, outs: { ...inputs, live: "ok" } };
    },
    async read(id, props) {
        if (props === undefined) return { id };
        const s = (await netScript(props.scriptPath, "status", props.stateDir, ["--tap", props.tap], props.sudo, props.dir)) as unknown as NetStatus;
        const t = s.taps.find((x) => x.name === props.tap);
        if (t === undefined || (!t.recorded && !t.exists) || (t.exists && !t.ours)) return { id: "", props: undefined };
        const healthy = t.ours && t.master === props.bridge && t.up === true;
        return { id, props: { ...props, live: healthy ? "ok" : "degraded" } };
    },
    async diff(_id, olds, news) {
        const replaces = (["stateDir", "bridge", "tap"] as const).filter((k) => (k === "stateDir" ? !sameStateDir(olds, news) : olds[k] !== news[k]));
        const changes = replaces.length > 0 || olds.live !== "ok"
            || (["scriptPath", "owner", "multiQueue", "sudo", "dir"] as const).some((k) => olds[k] !== news[k]);
        return { changes, replaces, deleteBeforeReplace: true };
    },
    async update(_id, _olds, news) {
        // tap-up makes the TAP again when its owner or multi-queue flag changed.
        await tapUp(news);
        return { outs: { ...news, live: "ok" } };
    },
    async delete(_id, props) {
        await netScript(props.scriptPath, "tap-down", props.stateDir, ["--tap", props.tap], props.sudo, props.dir);
    },
};

type InputsOf<T> = { [K in keyof T]: pulumi.Input<T[K]> };

/** The bridge with its gateway address, forwarding and NAT, as a dynamic resource whose read checks the host. */
export class NetBridge extends pulumi.dynamic.Resource {
    public declare readonly bridge: pulumi.Output<string>;
    public declare readonly live: pulumi.Output<Live>;

    constructor(name: string, args: InputsOf<NetBridgeInputs>, opts?: pulumi.CustomResourceOptions) {
        super(bridgeProvider, name, { ...args, live: undefined }, opts, "pcp-eval", "NetBridge");
    }
}

/** One TAP device on the bridge, as a dynamic resource whose read checks the host. */
export class NetTap extends pulumi.dynamic.Resource {
    public declare readonly tap: pulumi.Output<string>;
    public declare readonly live: pulumi.Output<Live>;

    constructor(name: string, args: InputsOf<NetTapInputs>, opts?: pulumi.CustomResourceOptions) {
        super(tapProvider, name, { ...args, live: undefined }, opts, "pcp-eval", "NetTap");
    }
}

/**
 * The host bridge with its gateway address, forwarding and NAT (in an
 * nftables table of its own), plus one TAP device per TAP VM. Each TAP is a
 * resource of its own, so adding or removing a VM touches only its device.
 * host/net.sh does the work and records it under <stateDir>/net; `pulumi
 * refresh` runs its status verb, so a bridge or TAP lost to a reboot is made
 * again by the next `up`.
 */
export class TapBridge extends pulumi.ComponentResource {
    public readonly bridgeName: string;
    public readonly gateway: string;
    /** Per VM name, the resource that creates its TAP device; a TAP VM depends on it. */
    public readonly tapResources: Record<string, pulumi.Resource> = {};
    public readonly tapDevices: Record<string, string> = {};

    constructor(name: string, args: TapBridgeArgs, opts?: pulumi.ComponentResourceOptions) {
        super("pcp-eval:index:TapBridge", name, {}, opts);
        // Relative to the project: moving the checkout (with its state) replaces no device.
        const common = {
            dir: args.projectDir,
            scriptPath: path.join("host", "net.sh"),
            stateDir: projectRelative(path.join(args.stateDir, "net"), args.projectDir),
            sudo: args.useSudo,
        };
        this.bridgeName = args.bridge.name;
        this.gateway = args.bridge.gateway;
        const bridge = new NetBridge(
            `${name}-bridge`,
            {
                ...common,
                bridge: args.bridge.name,
                gatewayCidr: `${args.bridge.gateway}/${args.bridge.subnet.prefix}`,
                nftTable: args.bridge.nftTable,
            },
            { parent: this },
        );
        for (const [vmName, tap] of Object.entries(args.taps)) {
            this.tapDevices[vmName] = tap.device;
            this.tapResources[vmName] = new NetTap(
                `${name}-${tap.device}`,
                {
                    ...common,
                    // From the bridge's outputs: a replaced bridge replaces its TAPs too.
                    bridge: bridge.bridge,
                    tap: tap.device,
                    owner: args.tapOwner,
                    multiQueue: (tap.vcpus ?? constants.vm.vcpus) > 1,
                },
                { parent: this, dependsOn: [bridge] },
            );
        }
        this.registerOutputs({ bridgeName: this.bridgeName, gateway: this.gateway, tapDevices: this.tapDevices });
    }
}
