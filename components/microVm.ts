import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { VmSpec } from "./config";
import { constants, consolePorts, ConsolePorts, forwardedPorts, servicesTimeoutSeconds } from "./constants";
import { MicroVmProcess } from "./microVmProcess";
import { HostCommandBackend } from "./hostCommand";
import { NixBuild } from "./nixBuild";
import { projectRelative } from "./run";
import { flakeRef, nixString } from "./nixEval";
import { Target } from "./targets";

export interface MicroVmArgs {
    spec: VmSpec;
    /** Absolute flake path or flake reference. */
    flake: string;
    system: string;
    pcpSource: "nixpkgs" | "upstream";
    debugMode: boolean;
    /** pcp-eval:vmAccel: the VM process picks the accelerator when it starts (auto: the remembered KVM verdict). */
    vmAccel: "auto" | "kvm" | "tcg";
    /** The KVM verdict file (host/kvm-probe.sh's cache), read by vmAccel auto at start. */
    kvmVerdict: string;
    sshPublicKey: pulumi.Input<string>;
    sshPrivateKeyPath?: string;
    stateDir: string;
    projectDir: string;
    /** The runner's store path as evaluated before building (components/nixEval.ts): it decides the rebuild, and the VM runs it. */
    storePath: pulumi.Input<string>;
    hostCommands: HostCommandBackend;
    /** Resources the VM's network needs first (its TAP device). */
    networkDependencies?: pulumi.Resource[];
}

/** The Nix expression that builds one VM's runner through the flake's parametric function. */
export function runnerExpression(args: Pick<MicroVmArgs, "spec" | "flake" | "system" | "pcpSource" | "debugMode">, sshPublicKey: string): string {
    const { spec } = args;
    const fields = [
        `variant = ${nixString(spec.variant)};`,
        `name = ${nixString(spec.name)};`,
        `networking = ${nixString(spec.networking)};`,
        spec.tap
            ? `tap = { id = ${nixString(spec.tap.device)}; address = ${nixString(spec.tap.address)}; mac = ${nixString(spec.tap.mac)}; };`
            : "",
        `sshAuthorizedKeys = [ ${nixString(sshPublicKey)} ];`,
        `debugMode = ${args.debugMode};`,
        `memoryMiB = ${spec.memoryMiB};`,
        `vcpus = ${spec.vcpus};`,
        `pcpSource = ${nixString(args.pcpSource)};`,
    ].filter((f) => f !== "");
    return `(builtins.getFlake ${nixString(flakeRef(args.flake))}).lib.${args.system}.mkMicrovmRunner { ${fields.join(" ")} }`;
}

/** Where a VM's services answer from the host: forwarded loopback ports, or its own TAP address. */
export function vmTarget(spec: VmSpec, sshPrivateKeyPath?: string): Target {
    const features = constants.variants[spec.variant].features;
    const consoles: ConsolePorts = consolePorts(spec.variant);
    const guest = constants.ports;
    let host: string;
    let ports: { ssh: number; pmcd: number; pmproxy: number; grafana?: number; prometheus?: number; nodeExporter?: number };
    if (spec.tap) {
        host = spec.tap.address;
        ports = { ssh: guest.ssh, pmcd: guest.pmcd, pmproxy: guest.pmproxy };
        if (features.grafana) Object.assign(ports, { grafana: guest.grafana, prometheus: guest.prometheus });
        if (features.evalTools) ports.nodeExporter = guest.nodeExporter;
    } else {
        host = "127.0.0.1";
        ports = forwardedPorts(spec.variant);
    }
    const target: Target = {
        kind: "vm",
        variant: spec.variant,
        networking: spec.networking,
        pmcd: { host, port: ports.pmcd },
        pmproxyUrl: `http://${host}:${ports.pmproxy}`,
        consoles: { host: "127.0.0.1", serial: consoles.serial, virtio: consoles.virtio },
        features: { linuxPmda: true, bpf: features.bpf, pmieTest: features.pmieTest, nodeExporter: features.evalTools },
    };
    if (ports.nodeExporter !== undefined) target.nodeExporterUrl = `http://${host}:${ports.nodeExporter}`;
    if (ports.grafana !== undefined) target.grafanaUrl = `http://${host}:${ports.grafana}`;
    if (ports.prometheus !== undefined) target.prometheusUrl = `http://${host}:${ports.prometheus}`;
    target.ssh = { host, port: ports.ssh, user: "root" };
    if (sshPrivateKeyPath !== undefined) target.ssh.identityFile = sshPrivateKeyPath;
    return target;
}

/** PHASE=SPEC readiness probes for vm.sh, in the order the VM comes up. */
export function readinessProbes(target: Target): string[] {
    const probes: string[] = [];
    if (target.consoles) {
        probes.push(`serial=console:${target.consoles.host}:${target.consoles.serial}`);
        probes.push(`virtio=console:${target.consoles.host}:${target.consoles.virtio}`);
    }
    probes.push(`services=tcp:${target.pmcd.host}:${target.pmcd.port}`);
    probes.push(`services=${target.pmproxyUrl}/pmapi/context`);
    if (target.nodeExporterUrl) probes.push(`services=${target.nodeExporterUrl}/metrics`);
    if (target.grafanaUrl) probes.push(`services=${target.grafanaUrl}/api/health`);
    if (target.prometheusUrl) probes.push(`services=${target.prometheusUrl}/-/ready`);
    probes.push(`metrics=${target.pmproxyUrl}/pmapi/fetch?names=${constants.metrics.required.join(",")}`);
    return probes;
}

/** Host ports the VM takes (forwards of user networking, and the consoles). */
export function hostPorts(spec: VmSpec): number[] {
    const consoles = consolePorts(spec.variant);
    const forwards = spec.tap ? [] : Object.values(forwardedPorts(spec.variant)).filter((p): p is number => p !== undefined);
    return [...forwards, consoles.serial, consoles.virtio];
}

/**
 * One NixOS MicroVM: builds the variant's runner through the flake's
 * parametric function, starts it detached, and waits until its services
 * answer. Destroy shuts it down (graceful, then TERM, then KILL).
 */
export class MicroVm extends pulumi.ComponentResource {
    public readonly vmName: string;
    public readonly target: Target;
    public readonly runnerPath: pulumi.Output<string>;
    public readonly pid: pulumi.Output<number>;

    constructor(name: string, args: MicroVmArgs, opts?: pulumi.ComponentResourceOptions) {
        super("pcp-eval:index:MicroVm", name, {}, opts);
        this.vmName = args.spec.name;
        const vmDir = path.join(args.stateDir, "vms", args.spec.name);
        const runner = new NixBuild(
            `${name}-runner`,
            {
                expr: pulumi.output(args.sshPublicKey).apply((key) => runnerExpression(args, key)),
                outLink: path.join(vmDir, "runner"),
                fingerprint: args.storePath,
                projectDir: args.projectDir,
                hostCommands: args.hostCommands,
            },
            { parent: this },
        );
        // The VM runs the path evaluated before the build, so that a plan already
        // names the store path that replaces a VM; the build must give that path.
        this.runnerPath = pulumi.all([runner.storePath, args.storePath]).apply(([built, planned]) => {
            if (built !== planned) throw new Error(`${name}: nix built ${built}, but evaluation gave ${planned}; the flake is not deterministic`);
            return built;
        });
        this.target = vmTarget(args.spec, args.sshPrivateKeyPath);
        const t = constants.timeoutsSeconds;
        const process = new MicroVmProcess(
            `${name}-process`,
            {
                name: args.spec.name,
                runner: args.storePath,
                // Chosen at start (vm.sh), not built into the runner: a KVM verdict that changes replaces nothing.
                accel: args.vmAccel,
                kvmVerdict: args.kvmVerdict,
                // Relative to the project: moving the checkout (with its state) replaces no VM.
                dir: args.projectDir,
                stateDir: projectRelative(path.join(args.stateDir, "vms"), args.projectDir),
                scriptPath: path.join("host", "vm.sh"),
                ports: hostPorts(args.spec),
                probes: readinessProbes(this.target),
                timeouts: {
                    start: t.processStart,
                    serial: t.serial,
                    virtio: t.virtio,
                    services: servicesTimeoutSeconds(args.spec.variant),
                    metrics: t.metrics,
                    shutdown: t.shutdown,
                    exit: t.exit,
                },
            },
            { parent: this, dependsOn: [runner, ...(args.networkDependencies ?? [])] },
        );
        this.pid = process.pid;
        this.registerOutputs({ target: this.target, runnerPath: this.runnerPath, pid: this.pid });
    }
}
