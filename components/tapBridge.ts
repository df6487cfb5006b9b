import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { BridgeConfig, TapAttachment } from "./config";
import { scriptCommand } from "./shell";

export interface TapBridgeArgs {
    bridge: BridgeConfig;
    /** One TAP device per TAP-networked VM, keyed by VM name. */
    taps: Record<string, TapAttachment>;
    /** The user that runs the VMs and so must be able to open the TAP devices. */
    tapOwner: string;
    stateDir: string;
    projectDir: string;
    useSudo: boolean;
}

/**
 * The host bridge with its gateway address, forwarding and NAT (in an
 * nftables table of its own), plus one TAP device per TAP VM. Each TAP is a
 * resource of its own, so adding or removing a VM touches only its device.
 */
export class TapBridge extends pulumi.ComponentResource {
    public readonly bridgeName: string;
    public readonly gateway: string;
    /** Per VM name, the resource that creates its TAP device; a TAP VM depends on it. */
    public readonly tapResources: Record<string, pulumi.Resource> = {};
    public readonly tapDevices: Record<string, string> = {};

    constructor(name: string, args: TapBridgeArgs, opts?: pulumi.ComponentResourceOptions) {
        super("pcp-eval:index:TapBridge", name, {}, opts);
        const netDir = `${args.stateDir}/net`;
        this.bridgeName = args.bridge.name;
        this.gateway = args.bridge.gateway;
        const bridge = new command.local.Command(
            `${name}-bridge`,
            {
                create: scriptCommand("net.sh", "bridge-up", {
                    "state-dir": netDir,
                    bridge: args.bridge.name,
                    "gateway-cidr": `${args.bridge.gateway}/${args.bridge.subnet.prefix}`,
                    "nft-table": args.bridge.nftTable,
                    sudo: args.useSudo,
                }),
                delete: scriptCommand("net.sh", "bridge-down", { "state-dir": netDir, sudo: args.useSudo }),
                dir: args.projectDir,
            },
            { parent: this },
        );
        for (const [vmName, tap] of Object.entries(args.taps)) {
            this.tapDevices[vmName] = tap.device;
            this.tapResources[vmName] = new command.local.Command(
                `${name}-${tap.device}`,
                {
                    create: scriptCommand("net.sh", "tap-up", {
                        "state-dir": netDir,
                        bridge: args.bridge.name,
                        tap: tap.device,
                        owner: args.tapOwner,
                        sudo: args.useSudo,
                    }),
                    delete: scriptCommand("net.sh", "tap-down", { "state-dir": netDir, tap: tap.device, sudo: args.useSudo }),
                    dir: args.projectDir,
                },
                { parent: this, dependsOn: [bridge] },
            );
        }
        this.registerOutputs({ bridgeName: this.bridgeName, gateway: this.gateway, tapDevices: this.tapDevices });
    }
}
