/**
 * The whole environment as one resource graph. index.ts calls this with the
 * validated config; the unit tests call it under Pulumi's mocks.
 */
import * as os from "node:os";
import * as pulumi from "@pulumi/pulumi";
import { anyPartEnabled, needsDocker, PcpEvalConfig } from "./config";
import { GrafanaAdmin } from "./grafanaAdmin";
import { dashboardUrls } from "./grafanaCatalog";
import { MicroVm, MicroVmArgs, runnerExpression } from "./microVm";
import { flakeOutputExpression, NixExpressions, StorePathEvaluator, StorePaths } from "./nixEval";
import { imageAttrPath, OciImage } from "./ociImage";
import { PcpDaemonSet } from "./pcpDaemonSet";
import { shellQuote } from "./shell";
import { SshKey } from "./sshKey";
import { afterStateDir, StateDir } from "./stateDir";
import { TapBridge } from "./tapBridge";
import { Target } from "./targets";

export interface EnvironmentOptions {
    /**
     * The KVM verdict file host/kvm-probe.sh writes (preflight probes on up):
     * with pcp-eval:vmAccel auto, each VM reads it when it starts.
     */
    kvmVerdict: string;
    /** The user who runs the VMs and owns the TAP devices. */
    vmUser?: string;
    /**
     * The store paths Nix would build for the image and each runner
     * (components/nixEval.ts evaluateStorePaths in the project directory);
     * they decide what is rebuilt and replaced.
     */
    storePaths: StorePathEvaluator;
}

/** Stack outputs; a part that is off has no key at all. */
export interface EnvironmentOutputs {
    grafanaUrl?: string;
    /** A direct URL per provisioned dashboard, keyed by its uid. */
    grafanaDashboards?: Record<string, string>;
    /** The password of Grafana's `admin` user, a secret (`pulumi stack output grafanaAdminPassword --show-secrets`). */
    grafanaAdminPassword?: pulumi.Output<string>;
    prometheusUrl?: string;
    pmproxyUrls: Record<string, string>;
    pmcdEndpoints: Record<string, string>;
    sshCommands?: Record<string, string>;
    consolePorts?: Record<string, { serial: number; virtio: number }>;
    kubernetes?: {
        namespace: pulumi.Output<string>;
        daemonSet: pulumi.Output<string>;
        context: string;
        /** Per node, read from the ready pods once the rollout is done. */
        pmcdEndpoints: pulumi.Output<Record<string, string>>;
        pmproxyUrls: pulumi.Output<Record<string, string>>;
    };
    targets: Record<string, Target>;
    summary: pulumi.Output<string>;
    /** Absolute path of the stack's host state; verify's leftover scan reads it from here. */
    stateDir: string;
}

export interface Environment {
    outputs: EnvironmentOutputs;
    bridge?: TapBridge;
    image?: OciImage;
    vms: MicroVm[];
    grafanaAdmin?: GrafanaAdmin;
    daemonSet?: PcpDaemonSet;
}

export function provisionEnvironment(cfg: PcpEvalConfig, options: EnvironmentOptions): Environment {
    const common = { stateDir: cfg.stateDir, projectDir: cfg.projectDir, hostCommands: cfg.hostCommands };

    const stateDir = anyPartEnabled(cfg) ? new StateDir("state", { dir: cfg.stateDir, projectDir: cfg.projectDir, hostCommands: cfg.hostCommands }) : undefined;
    const after = afterStateDir(stateDir);

    const tapVms = cfg.vms.filter((vm) => vm.tap !== undefined);
    const bridge = cfg.bridge
        ? new TapBridge("network", {
              ...common,
              bridge: cfg.bridge,
              taps: Object.fromEntries(tapVms.map((vm) => [vm.name, { ...vm.tap!, vcpus: vm.vcpus }])),
              tapOwner: options.vmUser ?? os.userInfo().username,
              useSudo: cfg.useSudo,
          }, after)
        : undefined;

    const wantImage = cfg.container !== undefined || cfg.kubernetes !== undefined;
    const key = cfg.vms.length > 0 && cfg.sshPublicKey === undefined ? new SshKey("ssh-key", { ...common, stack: cfg.stack }, after) : undefined;
    const sshPublicKey = pulumi.output(key ? key.publicKey : (cfg.sshPublicKey ?? ""));
    const vmArgs = cfg.vms.map((spec) => ({
        spec,
        flake: cfg.flake,
        system: cfg.system,
        pcpSource: cfg.pcpSource,
        debugMode: cfg.debugMode,
        vmAccel: cfg.vmAccel,
        kvmVerdict: options.kvmVerdict,
    }));

    // What Nix would build, from one evaluation for the image and every runner.
    const storePaths = sshPublicKey.apply((publicKey): Promise<StorePaths> => {
        const expressions: NixExpressions = {};
        if (wantImage) expressions["pcp-image"] = flakeOutputExpression(cfg.flake, imageAttrPath(cfg.system));
        for (const vm of vmArgs) expressions[`vm-${vm.spec.name}`] = runnerExpression(vm, publicKey);
        return Object.keys(expressions).length > 0 ? options.storePaths(expressions) : Promise.resolve({});
    });
    const storePathOf = (name: string): pulumi.Output<string> => storePaths.apply((paths) => paths[name]!);

    const image = wantImage
        ? new OciImage("pcp-image", {
              ...common,
              stack: cfg.stack,
              flake: cfg.flake,
              system: cfg.system,
              storePath: storePathOf("pcp-image"),
              container: cfg.container,
              dockerLoad: needsDocker(cfg),
          }, after)
        : undefined;

    const vms = vmArgs.map(
        (vm) =>
            new MicroVm(`vm-${vm.spec.name}`, {
                ...common,
                ...vm,
                sshPublicKey,
                sshPrivateKeyPath: key?.privateKeyPath,
                storePath: storePathOf(`vm-${vm.spec.name}`),
                networkDependencies: vm.spec.tap && bridge ? [bridge.tapResources[vm.spec.name]!] : [],
            } satisfies MicroVmArgs, after),
    );

    const daemonSet =
        cfg.kubernetes && image
            ? new PcpDaemonSet("pcp-daemonset", {
                  stack: cfg.stack,
                  kubernetes: cfg.kubernetes,
                  image: image.imageRef,
                  imageLoaded: image.loaded,
                  imageTarball: image.tarball,
                  projectDir: cfg.projectDir,
                  hostCommands: cfg.hostCommands,
              }, after)
            : undefined;

    const targets: Record<string, Target> = {};
    if (image?.target) targets.container = image.target;
    for (const vm of vms) targets[nameOf(vm)] = vm.target;

    const outputs: EnvironmentOutputs = {
        pmproxyUrls: Object.fromEntries(Object.entries(targets).map(([n, t]) => [n, t.pmproxyUrl])),
        pmcdEndpoints: Object.fromEntries(Object.entries(targets).map(([n, t]) => [n, `${t.pmcd.host}:${t.pmcd.port}`])),
        targets,
        summary: pulumi.output(summarize(cfg, targets, daemonSet)),
        stateDir: cfg.stateDir,
    };
    const grafanaVm = vms.find((vm) => vm.target.grafanaUrl !== undefined);
    let grafanaAdmin: GrafanaAdmin | undefined;
    if (grafanaVm?.target.grafanaUrl) {
        outputs.grafanaUrl = grafanaVm.target.grafanaUrl;
        outputs.grafanaDashboards = dashboardUrls(grafanaVm.target.grafanaUrl);
        grafanaAdmin = new GrafanaAdmin("grafana-admin", { vm: grafanaVm, hostCommands: cfg.hostCommands, projectDir: cfg.projectDir }, after);
        outputs.grafanaAdminPassword = grafanaAdmin.password;
    }
    if (grafanaVm?.target.prometheusUrl) outputs.prometheusUrl = grafanaVm.target.prometheusUrl;
    if (vms.length > 0) {
        outputs.sshCommands = Object.fromEntries(
            vms.map((vm) => {
                const ssh = vm.target.ssh!;
                const identity = ssh.identityFile ? `-i ${shellQuote(ssh.identityFile)} ` : "";
                // The guest's root filesystem is rebuilt at every boot, and so are its host keys.
                const hostKeys = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null ";
                return [nameOf(vm), `ssh ${hostKeys}${identity}-p ${ssh.port} ${ssh.user}@${ssh.host}`];
            }),
        );
        outputs.consolePorts = Object.fromEntries(vms.map((vm) => [nameOf(vm), { serial: vm.target.consoles!.serial, virtio: vm.target.consoles!.virtio }]));
    }
    if (daemonSet && cfg.kubernetes) {
        outputs.kubernetes = {
            namespace: daemonSet.namespace,
            daemonSet: daemonSet.daemonSetName,
            context: cfg.kubernetes.context,
            pmcdEndpoints: daemonSet.pmcdEndpoints,
            pmproxyUrls: daemonSet.pmproxyUrls,
        };
    }
    return { outputs, bridge, image, vms, grafanaAdmin, daemonSet };
}

function nameOf(vm: MicroVm): string {
    return vm.vmName;
}

function summarize(cfg: PcpEvalConfig, targets: Record<string, Target>, daemonSet?: PcpDaemonSet): string {
    const lines = [`pcp-eval stack ${cfg.stack}:`];
    for (const [name, t] of Object.entries(targets)) {
        const extras = [t.grafanaUrl && `grafana ${t.grafanaUrl}`, t.prometheusUrl && `prometheus ${t.prometheusUrl}`, t.nodeExporterUrl && `node_exporter ${t.nodeExporterUrl}`]
            .filter(Boolean)
            .join(", ");
        const where = t.kind === "vm" ? `${t.variant} VM (${t.networking})` : t.kind;
        lines.push(`  ${name}: ${where}, pmcd ${t.pmcd.host}:${t.pmcd.port}, pmproxy ${t.pmproxyUrl}${extras ? `, ${extras}` : ""}`);
    }
    if (cfg.bridge) lines.push(`  bridge ${cfg.bridge.name} ${cfg.bridge.gateway}/${cfg.bridge.subnet.prefix}`);
    if (daemonSet && cfg.kubernetes) lines.push(`  kubernetes: DaemonSet in namespace ${cfg.kubernetes.namespace} (context ${cfg.kubernetes.context})`);
    return lines.join("\n");
}
