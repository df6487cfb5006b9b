import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { ContainerConfig } from "./config";
import { constants } from "./constants";
import { NixBuild } from "./nixBuild";
import { parseScriptJson, scriptCommandOutput } from "./shell";
import { Target } from "./targets";

export interface OciImageArgs {
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

    constructor(name: string, args: OciImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("pcp-eval:index:OciImage", name, {}, opts);
        const image = new NixBuild(
            `${name}-image`,
            {
                installable: `${args.flake.startsWith("/") ? `path:${args.flake}` : args.flake}#packages.${args.system}.pcp-container`,
                outLink: path.join(args.stateDir, "image", "pcp-container.tar.gz"),
                fingerprint: args.fingerprint,
                projectDir: args.projectDir,
            },
            { parent: this },
        );
        const load = new command.local.Command(
            `${name}-load`,
            {
                create: scriptCommandOutput("oci.sh", "load", { tarball: image.storePath, repo: constants.container.imageName }),
                delete: scriptCommandOutput("oci.sh", "remove", { tarball: image.storePath, repo: constants.container.imageName }),
                dir: args.projectDir,
                triggers: [image.storePath],
            },
            { parent: this },
        );
        this.loaded = load;
        this.imageRef = load.stdout.apply((out) => parseScriptJson<{ image: string }>(out, "docker load").image);

        if (args.container) {
            const ports = constants.ports;
            const c = new docker.Container(
                `${name}-container`,
                {
                    name: `pcp-eval-${args.stack}`,
                    image: this.imageRef,
                    user: String(constants.container.uid),
                    restart: "unless-stopped",
                    mustRun: true,
                    ports: [
                        { internal: ports.pmcd, external: args.container.pmcdPort, ip: args.container.hostAddress },
                        { internal: ports.pmproxy, external: args.container.pmproxyPort, ip: args.container.hostAddress },
                    ],
                    healthcheck: {
                        tests: ["CMD", "pmprobe", "-h", "127.0.0.1", "pmcd.version"],
                        interval: "5s",
                        timeout: "3s",
                        retries: 3,
                        startPeriod: "5s",
                    },
                    labels: [
                        { label: "app.kubernetes.io/part-of", value: "pcp-eval" },
                        { label: "pcp-eval.stack", value: args.stack },
                        { label: "pcp-eval.project-dir", value: args.projectDir },
                    ],
                    // Create returns only once the health check (pmcd answering) passes.
                    wait: true,
                    waitTimeout: constants.timeoutsSeconds.services,
                },
                { parent: this, dependsOn: [load] },
            );
            this.containerName = c.name;
            this.target = containerTarget(args.container);
        }
        this.registerOutputs({ imageRef: this.imageRef, containerName: this.containerName, target: this.target });
    }
}
