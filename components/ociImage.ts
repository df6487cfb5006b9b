import * as docker from "@pulumi/docker";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { hostCommand, HostCommandBackend } from "./hostCommand";
import { ContainerConfig } from "./config";
import { constants } from "./constants";
import { NixBuild } from "./nixBuild";
import { flakeRef } from "./nixEval";
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
    /** The image tarball's store path as evaluated before building (components/nixEval.ts): it decides the rebuild. */
    storePath: pulumi.Input<string>;
    /** Run the image in Docker; absent when only the cluster needs the image. */
    container?: ContainerConfig;
    /**
     * False when nothing needs the image in Docker: no container, and a cluster
     * whose containerd imports the tarball itself (pcp-eval:kubeContainerd).
     * Default true.
     */
    dockerLoad?: boolean;
}

/** The flake output that builds the image tarball. */
export function imageAttrPath(system: string): string {
    return `packages.${system}.pcp-container`;
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
    /** The image's docker-archive (the Nix build's store path). */
    public readonly tarball: pulumi.Output<string>;
    public readonly target?: Target;
    public readonly containerName?: pulumi.Output<string>;
    /** Done once pmcd answers on the published port; depend on it to use the container. */
    public readonly containerReady?: pulumi.Resource;

    constructor(name: string, args: OciImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("pcp-eval:index:OciImage", name, {}, opts);
        const image = new NixBuild(
            `${name}-image`,
            {
                installable: `${flakeRef(args.flake)}#${imageAttrPath(args.system)}`,
                outLink: path.join(args.stateDir, "image", "pcp-container.tar.gz"),
                fingerprint: args.storePath,
                projectDir: args.projectDir,
                hostCommands: args.hostCommands,
            },
            { parent: this },
        );
        this.tarball = image.storePath;
        const flags = { tarball: image.storePath, repo: constants.container.imageName };
        // Without Docker, the same reference is only computed (`oci.sh ref`), so a
        // containerd cluster gets the tag a docker load would have given.
        const dockerLoad = args.dockerLoad ?? true;
        const load = hostCommand(
            args.hostCommands,
            dockerLoad ? `${name}-load` : `${name}-ref`,
            // Known at preview: a new image replaces the load (and so the container) with the old and new path in the plan.
            dockerLoad
                ? {
                      create: scriptCommandOutput("oci.sh", "load", flags),
                      delete: scriptCommandOutput("oci.sh", "remove", flags),
                      // An image tag removed by hand is drift; the repair loads it again.
                      check: scriptCommandOutput("oci.sh", "status", flags),
                      dir: args.projectDir,
                      triggers: [args.storePath],
                  }
                : { create: scriptCommandOutput("oci.sh", "ref", flags), dir: args.projectDir, triggers: [args.storePath] },
            { parent: this },
        );
        this.loaded = load;
        this.imageRef = load.stdout.apply((out) => parseScriptJson<{ image: string }>(out, dockerLoad ? "docker load" : "oci.sh ref").image);

        if (args.container) {
            if (!dockerLoad) throw new Error("OciImage: a container needs the image in Docker (dockerLoad must not be false)");
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
        this.registerOutputs({ imageRef: this.imageRef, tarball: this.tarball, containerName: this.containerName, target: this.target });
    }
}
