import * as docker from "@pulumi/docker";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { hostCommand, HostCommandBackend } from "./hostCommand";
import { ContainerConfig } from "./config";
import { constants } from "./constants";
import { NixBuild } from "./nixBuild";
import { containerSpec, reachableAddress } from "./ociContainerSpec";
import { parseScriptJson, scriptCommand, scriptCommandOutput } from "./shell";
import { Target } from "./targets";

export interface OciImageArgs {
    /** Which backend runs host commands (pcp-eval:hostCommands). */
    hostCommands: HostCommandBackend;
    stack: string;
    /** Absolute flake path or flake reference. */
    flake: string;
    system: string;
    stateDir: string;
    projectDir: string;
    fingerprint: string;
    /** Run the image in Docker; absent when only the cluster needs the image. */
    container?: ContainerConfig;
}

/** Where the container's pmcd and pmproxy answer on the host. */
export function containerTarget(container: ContainerConfig): Target {
    return {
        kind: "container",
        pmcd: { host: container.hostAddress, port: container.pmcdPort },
        pmproxyUrl: `http://${container.hostAddress}:${container.pmproxyPort}`,
        features: { linuxPmda: true, bpf: false, pmieTest: false, nodeExporter: false },
    };
}

/**
 * The Nix-built PCP OCI image: built, loaded into Docker under a tag derived
 * from its store hash (an unchanged image is not loaded again), and, when
 * asked, run as a container with pmcd and pmproxy as the pcp user.
 */
export class OciImage extends pulumi.ComponentResource {
    /** The loaded image reference, e.g. pcp-eval:<store hash>. */
    public readonly imageRef: pulumi.Output<string>;
    /** Depend on this to use the image (e.g. to load it into a cluster). */
    public readonly loaded: pulumi.Resource;
    public readonly target?: Target;
    public readonly containerName?: pulumi.Output<string>;
    /** Done once pmcd answers on the published port; depend on it to use the container. */
    public readonly containerReady?: pulumi.Resource;

    constructor(name: string, args: OciImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("pcp-eval:index:OciImage", name, {}, opts);
        const image = new NixBuild(
            `${name}-image`,
            {
                installable: `${args.flake.startsWith("/") ? `path:${args.flake}` : args.flake}#packages.${args.system}.pcp-container`,
                outLink: path.join(args.stateDir, "image", "pcp-container.tar.gz"),
                fingerprint: args.fingerprint,
                projectDir: args.projectDir,
                hostCommands: args.hostCommands,
            },
            { parent: this },
        );
        const load = hostCommand(
            args.hostCommands,
            `${name}-load`,
            {
                create: scriptCommandOutput("oci.sh", "load", { tarball: image.storePath, repo: constants.container.imageName }),
                delete: scriptCommandOutput("oci.sh", "remove", { tarball: image.storePath, repo: constants.container.imageName }),
                // An image tag removed by hand is drift; the repair loads it again.
                check: scriptCommandOutput("oci.sh", "status", { tarball: image.storePath, repo: constants.container.imageName }),
                dir: args.projectDir,
                triggers: [image.storePath],
            },
            { parent: this },
        );
        this.loaded = load;
        this.imageRef = load.stdout.apply((out) => parseScriptJson<{ image: string }>(out, "docker load").image);

        if (args.container) {
            const spec = containerSpec({ stack: args.stack, projectDir: args.projectDir, ...args.container });
            const triggersOfPorts = [args.container.hostAddress, String(args.container.pmcdPort), String(args.container.pmproxyPort)];
            // A port already bound fails here, naming the port, before Docker creates a container it could not start.
            const ports = hostCommand(
                args.hostCommands,
                `${name}-ports`,
                {
                    create: scriptCommand("oci.sh", "check-ports", {
                        address: args.container.hostAddress,
                        port: spec.ports.map((p) => String(p.external)),
                    }),
                    dir: args.projectDir,
                    triggers: triggersOfPorts,
                },
                { parent: this },
            );
            const c = new docker.Container(
                `${name}-container`,
                {
                    name: spec.name,
                    image: this.imageRef,
                    user: spec.user,
                    restart: spec.restart,
                    mustRun: true,
                    ports: spec.ports.map((p) => ({ internal: p.internal, external: p.external, ip: p.ip, protocol: "tcp" })),
                    healthcheck: {
                        tests: spec.healthcheck.test,
                        interval: `${spec.healthcheck.intervalSeconds}s`,
                        timeout: `${spec.healthcheck.timeoutSeconds}s`,
                        startPeriod: `${spec.healthcheck.startPeriodSeconds}s`,
                        retries: spec.healthcheck.retries,
                    },
                    labels: Object.entries(spec.labels).map(([label, value]) => ({ label, value })),
                    // Create returns only once the health check (pmcd answering inside) passes.
                    wait: true,
                    waitTimeout: constants.timeoutsSeconds.services,
                    // Destroy and replacement stop it gracefully: SIGTERM, then this long before SIGKILL.
                    stopSignal: "SIGTERM",
                    stopTimeout: spec.stopTimeoutSeconds,
                    destroyGraceSeconds: spec.stopTimeoutSeconds,
                },
                // The name and host ports are fixed, so the old container must go before its replacement starts.
                { parent: this, dependsOn: [load, ports], deleteBeforeReplace: true },
            );
            // And pmcd answers from the host, through the published port.
            const ready = hostCommand(
                args.hostCommands,
                `${name}-pmcd-ready`,
                {
                    create: scriptCommand("oci.sh", "wait-pmcd", {
                        address: reachableAddress(args.container.hostAddress),
                        port: String(args.container.pmcdPort),
                        timeout: String(constants.timeoutsSeconds.services),
                    }),
                    dir: args.projectDir,
                    triggers: [c.id],
                },
                { parent: this, dependsOn: [c] },
            );
            this.containerName = c.name;
            this.containerReady = ready;
            this.target = containerTarget(args.container);
        }
        this.registerOutputs({ imageRef: this.imageRef, containerName: this.containerName, target: this.target });
    }
}
