import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { BridgeConfig, TapAttachment } from "./config";
import { constants } from "./constants";
import { hostResourceOptions, hostResourceType } from "./providerPlugin";
import { projectRelative } from "./run";

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

/** Inputs of the bridge resource (provider/net.go serves it). */
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

type InputsOf<T> = { [K in keyof T]: pulumi.Input<T[K]> };

/** The bridge with its gateway address, forwarding and NAT, as a resource whose read checks the host. */
export class NetBridge extends pulumi.CustomResource {
    public declare readonly bridge: pulumi.Output<string>;
    public declare readonly live: pulumi.Output<Live>;

    constructor(name: string, args: InputsOf<NetBridgeInputs>, opts?: pulumi.CustomResourceOptions) {
        super(hostResourceType("NetBridge"), name, { ...args, live: undefined }, hostResourceOptions("NetBridge", opts));
    }
}

/** One TAP device on the bridge, as a resource whose read checks the host. */
export class NetTap extends pulumi.CustomResource {
    public declare readonly tap: pulumi.Output<string>;
    public declare readonly live: pulumi.Output<Live>;

    constructor(name: string, args: InputsOf<NetTapInputs>, opts?: pulumi.CustomResourceOptions) {
        super(hostResourceType("NetTap"), name, { ...args, live: undefined }, hostResourceOptions("NetTap", opts));
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
