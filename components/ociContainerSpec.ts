/**
 * How the PCP container runs, in one place: OciImage turns it into
 * @pulumi/docker Container arguments, the integration test into the same
 * `docker run` flags, so the test runs the container the program would.
 */
import { constants } from "./constants";

export interface ContainerSpecArgs {
    stack: string;
    projectDir: string;
    /** Host address the ports are published on (default 127.0.0.1 in the config). */
    hostAddress: string;
    pmcdPort: number;
    pmproxyPort: number;
    /** Defaults to pcp-eval-<stack>. */
    name?: string;
}

export interface PortMapping {
    internal: number;
    external: number;
    ip: string;
}

export interface HealthcheckSpec {
    /** Docker's exec form: ["CMD", program, args...]. */
    test: string[];
    intervalSeconds: number;
    timeoutSeconds: number;
    startPeriodSeconds: number;
    retries: number;
}

export interface ContainerSpec {
    name: string;
    /** Numeric UID; the group is the user's group in the image's /etc/passwd. */
    user: string;
    restart: "unless-stopped";
    ports: PortMapping[];
    healthcheck: HealthcheckSpec;
    labels: Record<string, string>;
    /** Seconds docker stop / destroy waits after SIGTERM before SIGKILL. */
    stopTimeoutSeconds: number;
}

/** Label keys; the stack label is what tells one stack's container from another's. */
export const containerLabels = {
    partOf: "app.kubernetes.io/part-of",
    managedBy: "app.kubernetes.io/managed-by",
    stack: "pcp-eval.stack",
    projectDir: "pcp-eval.project-dir",
} as const;

export function containerSpec(args: ContainerSpecArgs): ContainerSpec {
    const t = constants.timeoutsSeconds;
    return {
        name: args.name ?? `pcp-eval-${args.stack}`,
        user: String(constants.container.uid),
        restart: "unless-stopped",
        ports: [
            { internal: constants.ports.pmcd, external: args.pmcdPort, ip: args.hostAddress },
            { internal: constants.ports.pmproxy, external: args.pmproxyPort, ip: args.hostAddress },
        ],
        healthcheck: {
            // pmcd answers a PMAPI client inside the container (pmprobe is in both images' PATH).
            test: ["CMD", "pmprobe", "-h", "127.0.0.1", "pmcd.version"],
            intervalSeconds: t.processStart,
            timeoutSeconds: t.processStart,
            startPeriodSeconds: t.processStart,
            retries: Math.max(1, Math.ceil(t.services / t.processStart)),
        },
        labels: {
            [containerLabels.partOf]: "pcp-eval",
            [containerLabels.managedBy]: "pulumi",
            [containerLabels.stack]: args.stack,
            [containerLabels.projectDir]: args.projectDir,
        },
        stopTimeoutSeconds: t.shutdown,
    };
}

/** Where to reach a published port from this host: a wildcard address is reached on loopback. */
export function reachableAddress(hostAddress: string): string {
    return hostAddress === "0.0.0.0" ? "127.0.0.1" : hostAddress;
}

/** `docker run` arguments (after "run") equivalent to the Container OciImage creates. */
export function dockerRunArgs(spec: ContainerSpec, image: string): string[] {
    const args = ["--detach", "--name", spec.name, "--user", spec.user, "--restart", spec.restart, "--stop-timeout", String(spec.stopTimeoutSeconds)];
    for (const p of spec.ports) args.push("--publish", `${p.ip}:${p.external}:${p.internal}/tcp`);
    const h = spec.healthcheck;
    if (h.test[0] !== "CMD") throw new Error("dockerRunArgs: only exec-form health checks map onto --health-cmd");
    args.push(
        "--health-cmd",
        h.test.slice(1).join(" "),
        "--health-interval",
        `${h.intervalSeconds}s`,
        "--health-timeout",
        `${h.timeoutSeconds}s`,
        "--health-start-period",
        `${h.startPeriodSeconds}s`,
        "--health-retries",
        String(h.retries),
    );
    for (const [k, v] of Object.entries(spec.labels)) args.push("--label", `${k}=${v}`);
    args.push(image);
    return args;
}
