/**
 * The stack configuration, read into one typed, validated object.
 *
 * `parseConfig` is pure (raw key/value strings in, config or a ConfigError out)
 * so every rule is unit-tested without an engine; `loadConfig` feeds it from the
 * running stack. Every error is collected before any is thrown, so a user fixes
 * a config in one round instead of one error per `pulumi up`.
 */
import * as os from "node:os";
import * as path from "node:path";
import { constants, consolePorts, forwardedPorts, isVariant, Variant, variants } from "./constants";
import { HostCommandBackend, hostCommandBackends } from "./hostCommand";
import { Cidr, parseCidr, parseIpv4, formatIpv4 } from "./net";
import { sshPublicKeyProblem } from "./sshPublicKey";
import { planTaps } from "./plan";

export const projectName = "pcp-eval";

export type Networking = "user" | "tap";

export interface TapAttachment {
    /** Host TAP device name, e.g. pcptap0. */
    device: string;
    /** The guest's static address on the bridge subnet. */
    address: string;
    mac: string;
}

export interface VmSpec {
    /** Unique instance name; also the Pulumi resource name and state sub-directory. */
    name: string;
    variant: Variant;
    networking: Networking;
    memoryMiB: number;
    vcpus: number;
    /** Present exactly when networking is "tap". */
    tap?: TapAttachment;
    /** Where this VM's settings came from, for error messages: "pcp-eval:vms[1]". */
    source: string;
}

export interface ContainerConfig {
    hostAddress: string;
    pmcdPort: number;
    pmproxyPort: number;
}

export interface BridgeConfig {
    name: string;
    subnet: Cidr;
    gateway: string;
    nftTable: string;
}

export interface KubernetesConfig {
    context: string;
    /** Empty means the default kubeconfig lookup (KUBECONFIG, ~/.kube/config). */
    kubeconfig: string;
    namespace: string;
    /** The nodes' containerd socket, for clusters images reach through containerd (kubeadm, k3s); empty otherwise. */
    containerd: string;
    /** Mount the nodes' /run/udev (false for nodes without udev). */
    hostUdev: boolean;
}

export interface PcpEvalConfig {
    stack: string;
    projectDir: string;
    /** Absolute; every host artefact of the stack (out-links, pid files, logs, keys) lives below it. */
    stateDir: string;
    /** A flake reference; a local path is made absolute. */
    flake: string;
    /** True when the flake is a directory on this host (then `flake` is its absolute path). */
    flakeIsLocal: boolean;
    system: string;
    pcpSource: "nixpkgs" | "upstream";
    debugMode: boolean;
    /** A user-supplied public key; when absent the program generates one per stack. */
    sshPublicKey?: string;
    useSudo: boolean;
    hostCommands: HostCommandBackend;
    vmAccel: "auto" | "kvm" | "tcg";
    skipPreflight: boolean;
    container?: ContainerConfig;
    bridge?: BridgeConfig;
    vms: VmSpec[];
    kubernetes?: KubernetesConfig;
}

/** One schema entry; Pulumi.yaml declares the same keys (a test keeps them in step). */
export type ConfigKey =
    | { type: "string"; default: string; description: string }
    | { type: "integer"; default: number; description: string }
    | { type: "boolean"; default: boolean; description: string }
    | { type: "array"; default: readonly string[]; description: string };

/**
 * Every key of the `pcp-eval:` namespace. Defaults live in Pulumi.yaml; empty
 * strings and zeros mean "the value in nix/constants.json".
 */
export const configKeys = {
    stateDir: { type: "string", default: "", description: "Directory for the stack's host state (out-links, pid files, logs, keys); relative to the project. Empty: .pcp-eval-state/<stack>." },
    flake: { type: "string", default: "./nix", description: "Flake that builds PCP, the image and the VM runners: a path (relative to the project) or a flake reference." },
    system: { type: "string", default: "x86_64-linux", description: "Nix system to build for: x86_64-linux or aarch64-linux." },
    pcpSource: { type: "string", default: "nixpkgs", description: "nixpkgs (nixpkgs' binary-cached pcp; while nixpkgs has none, the flake builds the pinned upstream source and says so) or upstream (always build the pinned upstream source)." },
    debugMode: { type: "boolean", default: false, description: "Allow password root login (root:pcp) on the VMs. Off by default: SSH is by key only." },
    sshPublicKey: { type: "string", default: "", description: "Public key authorised on the VMs. Empty: generate an ed25519 key per stack under stateDir." },
    useSudo: { type: "boolean", default: false, description: "Run bridge and TAP commands through `sudo -n` when not root." },
    hostCommands: { type: "string", default: "command", description: "How host commands run: command (@pulumi/command's local.Command; Pulumi installs its plugin) or dynamic (HostCommand, served by pcp-eval's own provider plugin built from provider/, for hosts that cannot download the command plugin)." },
    skipPreflight: { type: "boolean", default: false, description: "Skip the host checks run before anything is created (not recommended). No KVM test boot runs either: VMs with vmAccel auto use TCG unless a KVM verdict is already remembered for this host boot." },
    containerEnabled: { type: "boolean", default: false, description: "Run the PCP OCI image in Docker (pmcd and pmproxy)." },
    containerHostAddress: { type: "string", default: "127.0.0.1", description: "Host address the container's pmcd and pmproxy ports are published on." },
    containerPortOffset: { type: "integer", default: 0, description: "Offset added to the pmcd and pmproxy host ports of the container, like a VM variant offset." },
    bridgeEnabled: { type: "boolean", default: false, description: "Create the TAP bridge (needed by VMs with tap networking)." },
    bridgeName: { type: "string", default: "", description: "Bridge device name. Empty: the name in nix/constants.json." },
    bridgeSubnet: { type: "string", default: "", description: "Bridge subnet in CIDR form. Empty: the subnet in nix/constants.json." },
    bridgeGateway: { type: "string", default: "", description: "Host address on the bridge (the VMs' gateway). Empty: the gateway in nix/constants.json." },
    vms: { type: "array", default: [], description: "MicroVMs, one string each: <variant>[:user|:tap][,name=N][,memory=MiB][,vcpus=N][,address=IP]. Variants: base, eval, grafana, bpf." },
    vmMemoryMiB: { type: "integer", default: 0, description: "Default memory per VM in MiB (at least the minimum in nix/constants.json). 0: the default in nix/constants.json." },
    vmAccel: { type: "string", default: "auto", description: "QEMU accelerator for the VMs: auto (KVM when the KVM test boot of `pulumi up`'s preflight worked on this host boot; TCG when it did not, or when no verdict is remembered, e.g. with skipPreflight), kvm or tcg." },
    vmVcpus: { type: "integer", default: 0, description: "Default vCPUs per VM. 0: the default in nix/constants.json." },
    kubernetesEnabled: { type: "boolean", default: false, description: "Deploy the PCP DaemonSet to a Kubernetes cluster." },
    kubeContext: { type: "string", default: "", description: "kubeconfig context to deploy to (required when kubernetesEnabled)." },
    kubeconfig: { type: "string", default: "", description: "Path to a kubeconfig file. Empty: KUBECONFIG or ~/.kube/config." },
    kubeNamespace: { type: "string", default: "", description: "Namespace for the DaemonSet. Empty: the namespace in nix/constants.json." },
    kubeContainerd: { type: "string", default: "", description: "containerd socket of a cluster whose nodes run containerd on this host (kubeadm: /run/containerd/containerd.sock, k3s: /run/k3s/containerd/containerd.sock): the image is imported there. Empty: minikube, kind or docker-desktop, found from the context." },
    kubeHostUdev: { type: "boolean", default: true, description: "Mount the nodes' udev database (/run/udev, persistent device names) read-only into the DaemonSet. Turn off for nodes without udev: there the pod would wait on a FailedMount (it is never created on the node)." },
} as const satisfies Record<string, ConfigKey>;

export type ConfigKeyName = keyof typeof configKeys;
type KeysOfType<T extends ConfigKey["type"]> = { [K in ConfigKeyName]: (typeof configKeys)[K]["type"] extends T ? K : never }[ConfigKeyName];
type StringKey = KeysOfType<"string">;
type IntegerKey = KeysOfType<"integer">;
type BooleanKey = KeysOfType<"boolean">;

/** All validation failures of one config, each naming the key and the fix. */
export class ConfigError extends Error {
    constructor(public readonly problems: string[]) {
        super(
            `pcp-eval: the stack configuration has ${problems.length} problem${problems.length === 1 ? "" : "s"}; nothing was created:\n` +
                problems.map((p) => `  - ${p}`).join("\n"),
        );
        this.name = "ConfigError";
    }
}

const key = (name: string): string => `${projectName}:${name}`;

/** Reads typed values from raw config strings, recording type errors instead of throwing. */
class RawReader {
    constructor(
        private readonly raw: Record<string, string>,
        private readonly problems: string[],
    ) {}

    private get(name: ConfigKeyName): string | undefined {
        return this.raw[key(name)];
    }

    string(name: StringKey): string {
        return this.get(name) ?? configKeys[name].default;
    }

    boolean(name: BooleanKey): boolean {
        const fallback = configKeys[name].default;
        const v = this.get(name);
        if (v === undefined) return fallback;
        if (v === "true") return true;
        if (v === "false") return false;
        this.problems.push(`${key(name)}: "${v}" is not a boolean; set it with \`pulumi config set ${key(name)} true\` (or false)`);
        return fallback;
    }

    integer(name: IntegerKey): number {
        const fallback = configKeys[name].default;
        const v = this.get(name);
        if (v === undefined) return fallback;
        if (!/^-?\d+$/.test(v.trim())) {
            this.problems.push(`${key(name)}: "${v}" is not an integer; set a whole number with \`pulumi config set ${key(name)} <n>\``);
            return fallback;
        }
        return Number.parseInt(v, 10);
    }

    stringArray(name: ConfigKeyName): string[] {
        const v = this.get(name);
        if (v === undefined || v === "") return [];
        let parsed: unknown;
        try {
            parsed = JSON.parse(v);
        } catch {
            this.problems.push(`${key(name)}: not a list; set items with \`pulumi config set --path '${key(name)}[0]' eval\``);
            return [];
        }
        if (!Array.isArray(parsed) || parsed.some((item) => typeof item !== "string")) {
            this.problems.push(`${key(name)}: must be a list of strings such as "eval:user" or "grafana:tap"; set items with \`pulumi config set --path '${key(name)}[0]' eval\``);
            return [];
        }
        return parsed as string[];
    }
}

interface ParsedVmEntry {
    variant: Variant;
    networking: Networking;
    name: string;
    memoryMiB?: number;
    vcpus?: number;
    address?: string;
    source: string;
}

const vmNamePattern = /^[a-z][a-z0-9-]{0,30}$/;

function parseVmEntry(entry: string, index: number, problems: string[]): ParsedVmEntry | undefined {
    const source = `${key("vms")}[${index}]`;
    const [head, ...options] = entry.split(",").map((s) => s.trim());
    const [variantName, networkingName = "user", ...extra] = (head ?? "").split(":");
    let ok = true;
    if (!variantName || !isVariant(variantName)) {
        problems.push(`${source}: unknown variant "${variantName ?? ""}" in "${entry}"; use one of ${variants.join(", ")}`);
        ok = false;
    }
    if (networkingName !== "user" && networkingName !== "tap") {
        problems.push(`${source}: unknown networking "${networkingName}" in "${entry}"; use ":user" or ":tap"`);
        ok = false;
    }
    if (extra.length > 0) {
        problems.push(`${source}: "${entry}" has more than one ':'; write <variant>:<user|tap>[,option=value...]`);
        ok = false;
    }
    const parsed: ParsedVmEntry = {
        variant: variantName as Variant,
        networking: networkingName as Networking,
        name: variantName ?? "",
        source,
    };
    for (const option of options) {
        const eq = option.indexOf("=");
        const optName = eq < 0 ? option : option.slice(0, eq);
        const value = eq < 0 ? "" : option.slice(eq + 1);
        const asInt = (): number | undefined => {
            if (!/^\d+$/.test(value)) {
                problems.push(`${source}: ${optName}="${value}" is not a whole number`);
                ok = false;
                return undefined;
            }
            return Number.parseInt(value, 10);
        };
        switch (optName) {
            case "name":
                parsed.name = value;
                break;
            case "memory":
                parsed.memoryMiB = asInt();
                break;
            case "vcpus":
                parsed.vcpus = asInt();
                break;
            case "address":
                parsed.address = value;
                break;
            default:
                problems.push(`${source}: unknown option "${optName}" in "${entry}"; options are name, memory, vcpus, address`);
                ok = false;
        }
    }
    if (!vmNamePattern.test(parsed.name)) {
        problems.push(`${source}: VM name "${parsed.name}" must start with a letter and use only a-z, 0-9 and '-' (at most 31 characters); set name=<n>`);
        ok = false;
    }
    return ok ? parsed : undefined;
}

interface PortClaim {
    port: number;
    owner: string;
}

function checkPortCollisions(claims: PortClaim[], problems: string[]): void {
    const byPort = new Map<number, string[]>();
    for (const claim of claims) {
        byPort.set(claim.port, [...(byPort.get(claim.port) ?? []), claim.owner]);
    }
    for (const [port, owners] of [...byPort.entries()].sort((a, b) => a[0] - b[0])) {
        if (owners.length > 1) {
            problems.push(
                `host port ${port} is claimed by ${owners.join(" and ")}; remove one of them, use a different variant, ` +
                    `or move the container with ${key("containerPortOffset")}`,
            );
        }
    }
}

function isLocalFlake(flake: string): boolean {
    return flake.startsWith(".") || flake.startsWith("/") || flake.startsWith("path:") || !flake.includes(":");
}

/**
 * Validates raw stack config (the `pcp-eval:*` keys as strings, as Pulumi
 * hands them over) and returns the typed config, or throws a ConfigError
 * listing every problem.
 */
/**
 * Why `dir` (absolute, resolved) cannot be the state directory, or undefined.
 * Destroy cleans below it and host scripts take it as an argument, so it must
 * be a directory of its own: not the root, the project or the home directory
 * (nor hold them), and free of quotes, backslashes and control characters.
 */
export function checkStateDir(dir: string, projectDir: string, homeDir: string): string | undefined {
    // eslint-disable-next-line no-control-regex
    if (/["'`\\\x00-\x1f\x7f]/.test(dir)) return "holds a quote, backslash or control character";
    const inside = (outer: string, inner: string) => inner === outer || inner.startsWith(outer.endsWith("/") ? outer : `${outer}/`);
    if (dir === "/") return "is the root directory";
    const project = path.resolve(projectDir);
    if (dir === project) return "is the project directory";
    if (inside(dir, project)) return `holds the project directory ${project}`;
    if (homeDir !== "") {
        const home = path.resolve(homeDir);
        if (dir === home) return "is the home directory";
        if (inside(dir, home)) return `holds the home directory ${home}`;
    }
    return undefined;
}

export function parseConfig(raw: Record<string, string>, stack: string, projectDir: string, homeDir: string = os.homedir()): PcpEvalConfig {
    const problems: string[] = [];
    const read = new RawReader(raw, problems);

    for (const rawKey of Object.keys(raw)) {
        if (!rawKey.startsWith(`${projectName}:`)) continue;
        const name = rawKey.slice(projectName.length + 1);
        if (!Object.prototype.hasOwnProperty.call(configKeys, name)) {
            problems.push(`${rawKey}: unknown key; known keys are ${Object.keys(configKeys).join(", ")} (see README, "Configuration")`);
        }
    }

    const flakeRaw = read.string("flake").trim();
    if (flakeRaw === "") {
        problems.push(`${key("flake")}: empty flake reference; set a path such as ./nix or a reference such as github:owner/repo?dir=nix`);
    }
    const flakeIsLocal = isLocalFlake(flakeRaw);
    const flake = flakeIsLocal ? path.resolve(projectDir, flakeRaw.replace(/^path:/, "")) : flakeRaw;

    const system = read.string("system");
    if (system !== "x86_64-linux" && system !== "aarch64-linux") {
        problems.push(`${key("system")}: "${system}" is not supported; use x86_64-linux or aarch64-linux`);
    }
    const pcpSource = read.string("pcpSource");
    if (pcpSource !== "nixpkgs" && pcpSource !== "upstream") {
        problems.push(`${key("pcpSource")}: "${pcpSource}" is not a PCP source; use nixpkgs or upstream`);
    }
    const vmAccel = read.string("vmAccel");
    if (vmAccel !== "auto" && vmAccel !== "kvm" && vmAccel !== "tcg") {
        problems.push(`${key("vmAccel")}: "${vmAccel}" is not an accelerator; use auto, kvm or tcg`);
    }
    const hostCommands = read.string("hostCommands");
    if (!(hostCommandBackends as readonly string[]).includes(hostCommands)) {
        problems.push(`${key("hostCommands")}: "${hostCommands}" is not a backend; use ${hostCommandBackends.join(" or ")}`);
    }
    const stateDirRaw = read.string("stateDir");
    const stateDir = stateDirOf(stateDirRaw, stack, projectDir);
    const stateDirProblem = checkStateDir(stateDir, projectDir, homeDir);
    if (stateDirProblem !== undefined) {
        problems.push(`${key("stateDir")}: "${stateDirRaw}" ${stateDirProblem}; fix: pulumi config set ${key("stateDir")} to a directory of its own (empty: .pcp-eval-state/${stack} in the project)`);
    }
    const sshPublicKey = read.string("sshPublicKey").replace(/^[ \t]+|[ \t]+$/g, "");
    const keyProblem = sshPublicKey === "" ? undefined : sshPublicKeyProblem(sshPublicKey);
    if (keyProblem !== undefined) {
        problems.push(`${key("sshPublicKey")}: not an OpenSSH public key: ${keyProblem}; paste the contents of a .pub file, or leave it empty to generate one`);
    }

    // Container.
    let container: ContainerConfig | undefined;
    const containerClaims: PortClaim[] = [];
    if (read.boolean("containerEnabled")) {
        const hostAddress = read.string("containerHostAddress");
        if (parseIpv4(hostAddress) === undefined) {
            problems.push(`${key("containerHostAddress")}: "${hostAddress}" is not an IPv4 address; use 127.0.0.1 or another address of this host`);
        }
        const offset = read.integer("containerPortOffset");
        container = {
            hostAddress,
            pmcdPort: constants.hostForwards.pmcd + offset,
            pmproxyPort: constants.hostForwards.pmproxy + offset,
        };
        for (const [label, port] of [["pmcd", container.pmcdPort], ["pmproxy", container.pmproxyPort]] as const) {
            if (port < 1 || port > 65535) {
                problems.push(`${key("containerPortOffset")}: puts the container's ${label} on port ${port}, outside 1-65535; choose a smaller offset`);
            }
            containerClaims.push({ port, owner: `the container (${label})` });
        }
    }

    // Bridge.
    let bridge: BridgeConfig | undefined;
    const bridgeEnabled = read.boolean("bridgeEnabled");
    const bridgeName = read.string("bridgeName") || constants.network.bridge;
    const subnetRaw = read.string("bridgeSubnet") || constants.network.subnet;
    const gatewayRaw = read.string("bridgeGateway") || constants.network.gateway;
    const subnet = parseCidr(subnetRaw);
    if (bridgeEnabled) {
        // The rules live in nix/constants.json, which host/net.sh (host/lib.sh) reads too.
        const rules = constants.rules;
        if (!new RegExp(rules.ifname).test(bridgeName)) {
            problems.push(`${key("bridgeName")}: "${bridgeName}" is not a valid interface name (1-15 characters of a-z, 0-9, '_', '.', '-'; first a letter or digit)`);
        }
        if (subnet === undefined) {
            problems.push(`${key("bridgeSubnet")}: "${subnetRaw}" is not a valid IPv4 CIDR; write it as a.b.c.d/n, e.g. the default in nix/constants.json`);
        } else if (subnet.prefix > rules.subnetPrefix.max) {
            problems.push(`${key("bridgeSubnet")}: /${subnet.prefix} leaves no room for VMs; use /${rules.subnetPrefix.max} or larger`);
        } else if (subnet.prefix < rules.subnetPrefix.min) {
            problems.push(`${key("bridgeSubnet")}: /${subnet.prefix} is wider than the host may route for VMs; use /${rules.subnetPrefix.min} to /${rules.subnetPrefix.max}`);
        }
        const gw = parseIpv4(gatewayRaw);
        if (gw === undefined) {
            problems.push(`${key("bridgeGateway")}: "${gatewayRaw}" is not an IPv4 address`);
        } else if (subnet !== undefined && !subnet.hostAddress(gw)) {
            problems.push(`${key("bridgeGateway")}: ${gatewayRaw} is not a host address inside ${subnetRaw}; pick one inside the subnet`);
        }
        if (subnet !== undefined) {
            bridge = { name: bridgeName, subnet, gateway: gatewayRaw, nftTable: constants.network.nftTable };
        }
    }

    // VMs.
    const defaultMemory = read.integer("vmMemoryMiB") || constants.vm.memoryMiB;
    const defaultVcpus = read.integer("vmVcpus") || constants.vm.vcpus;
    if (defaultMemory < constants.vm.minMemoryMiB) {
        problems.push(`${key("vmMemoryMiB")}: ${defaultMemory} MiB is under the minimum of ${constants.vm.minMemoryMiB} MiB; raise it`);
    }
    const entries = read
        .stringArray("vms")
        .map((entry, index) => parseVmEntry(entry, index, problems))
        .filter((e): e is ParsedVmEntry => e !== undefined);

    const seenNames = new Map<string, string>();
    const vms: VmSpec[] = [];
    const vmClaims: PortClaim[] = [];
    const usedAddresses = new Map<string, { source: string; planned: boolean }>();
    // Each TAP VM's device, MAC and default address come from the plan, which
    // looks at no other VM: adding or removing one moves none of the others.
    const tapPlan = planTaps(
        entries.filter((e, i) => e.networking === "tap" && entries.findIndex((f) => f.name === e.name) === i),
        subnet,
    );
    for (const entry of entries) {
        const earlier = seenNames.get(entry.name);
        if (earlier !== undefined) {
            problems.push(`${entry.source}: VM "${entry.name}" is already defined by ${earlier}; remove the duplicate or give it another name=<n>`);
            continue;
        }
        seenNames.set(entry.name, entry.source);
        if (entry.name === "container") {
            problems.push(`${entry.source}: the name "container" is taken by the Docker container's outputs; set name=<another>`);
        }
        const memoryMiB = entry.memoryMiB ?? defaultMemory;
        if (entry.memoryMiB !== undefined && memoryMiB < constants.vm.minMemoryMiB) {
            problems.push(`${entry.source}: memory=${memoryMiB} MiB is under the minimum of ${constants.vm.minMemoryMiB} MiB; raise it`);
        }
        const vcpus = entry.vcpus ?? defaultVcpus;
        if (vcpus < 1) {
            problems.push(`${entry.source}: vcpus=${vcpus} must be at least 1`);
        }
        const spec: VmSpec = { name: entry.name, variant: entry.variant, networking: entry.networking, memoryMiB, vcpus, source: entry.source };
        const label = `${entry.source} (${entry.name})`;
        const consoles = consolePorts(entry.variant);
        vmClaims.push({ port: consoles.serial, owner: `${label} serial console` });
        vmClaims.push({ port: consoles.virtio, owner: `${label} virtio console` });
        if (entry.networking === "user") {
            if (entry.address !== undefined) {
                problems.push(`${entry.source}: address= only applies to tap networking; remove it or use "${entry.variant}:tap"`);
            }
            for (const [service, port] of Object.entries(forwardedPorts(entry.variant))) {
                if (port !== undefined) vmClaims.push({ port, owner: `${label} ${service}` });
            }
        } else {
            if (!bridgeEnabled) {
                problems.push(`${entry.source}: VM "${entry.name}" uses tap networking but the bridge is off; set ${key("bridgeEnabled")} true or use "${entry.variant}:user"`);
            }
            const { device, mac, address: slotAddress } = tapPlan[entry.name]!;
            let address = entry.address ?? slotAddress ?? "";
            const addr = parseIpv4(address);
            if (entry.address === undefined && slotAddress === undefined) {
                // An invalid subnet is its own problem, reported once above; only a valid one can be too small.
                if (subnet !== undefined) {
                    problems.push(`${entry.source}: the bridge subnet ${subnetRaw} is too small for this VM's default address; set address=<an address inside it> or use a larger subnet`);
                }
            } else if (addr === undefined) {
                problems.push(`${entry.source}: address "${address}" is not an IPv4 address`);
            } else if (subnet !== undefined) {
                if (!subnet.hostAddress(addr)) {
                    problems.push(`${entry.source}: address ${address} is outside the bridge subnet ${subnetRaw} (or is its network/broadcast address); pick an address inside it`);
                } else if (address === gatewayRaw) {
                    problems.push(`${entry.source}: address ${address} is the bridge gateway; pick another address`);
                }
                // Two planned addresses meet only for two VMs of one variant: their console ports collide, reported below.
                const holder = usedAddresses.get(address);
                const planned = entry.address === undefined;
                if (holder !== undefined && !(holder.planned && planned)) {
                    problems.push(`${entry.source}: address ${address} is already used by ${holder.source}; give each TAP VM its own address=`);
                }
                usedAddresses.set(address, { source: entry.source, planned });
            }
            address = addr === undefined ? address : formatIpv4(addr);
            spec.tap = { device, address, mac };
        }
        vms.push(spec);
    }
    checkPortCollisions([...vmClaims, ...containerClaims], problems);

    // Kubernetes.
    let kubernetes: KubernetesConfig | undefined;
    if (read.boolean("kubernetesEnabled")) {
        const context = read.string("kubeContext").trim();
        if (context === "") {
            problems.push(`${key("kubeContext")}: Kubernetes is on but no context is set; \`pulumi config set ${key("kubeContext")} minikube\` (see \`kubectl config get-contexts\`) or set ${key("kubernetesEnabled")} false`);
        }
        const namespace = read.string("kubeNamespace") || constants.kubernetes.namespace;
        if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(namespace)) {
            problems.push(`${key("kubeNamespace")}: "${namespace}" is not a valid namespace name (lower-case letters, digits, '-')`);
        }
        const containerd = read.string("kubeContainerd").trim();
        if (containerd !== "" && !containerd.startsWith("/")) {
            problems.push(`${key("kubeContainerd")}: "${containerd}" is not an absolute path; set it to the nodes' containerd socket, e.g. /run/containerd/containerd.sock, or to "" for minikube, kind or docker-desktop`);
        }
        kubernetes = { context, kubeconfig: read.string("kubeconfig"), namespace, containerd, hostUdev: read.boolean("kubeHostUdev") };
    }

    const config: PcpEvalConfig = {
        stack,
        projectDir,
        stateDir,
        flake,
        flakeIsLocal,
        system,
        pcpSource: pcpSource as PcpEvalConfig["pcpSource"],
        debugMode: read.boolean("debugMode"),
        sshPublicKey: sshPublicKey === "" ? undefined : sshPublicKey,
        useSudo: read.boolean("useSudo"),
        hostCommands: hostCommands as HostCommandBackend,
        vmAccel: vmAccel as PcpEvalConfig["vmAccel"],
        skipPreflight: read.boolean("skipPreflight"),
        container,
        bridge,
        vms,
        kubernetes,
    };
    if (problems.length > 0) throw new ConfigError(problems);
    return config;
}

/**
 * Whether the stack needs a Docker daemon: for the container, and to load the
 * image into a minikube, kind or docker-desktop cluster; a containerd cluster
 * (pcp-eval:kubeContainerd) imports the image itself. Preflight checks for the
 * daemon and the image component loads into it by this one rule.
 */
export function needsDocker(cfg: Pick<PcpEvalConfig, "container" | "kubernetes">): boolean {
    return cfg.container !== undefined || (cfg.kubernetes !== undefined && cfg.kubernetes.containerd === "");
}

/**
 * Whether any part is on (a VM, the container, the bridge, Kubernetes). With
 * none the program creates nothing: no state directory, and it builds no
 * provider plugin (an empty stack stays empty).
 */
export function anyPartEnabled(cfg: Pick<PcpEvalConfig, "vms" | "container" | "bridge" | "kubernetes">): boolean {
    return cfg.vms.length > 0 || cfg.container !== undefined || cfg.bridge !== undefined || cfg.kubernetes !== undefined;
}

/** The stack's state directory: pcp-eval:stateDir (relative to the project), else .pcp-eval-state/<stack>. The stack exports it as the output stateDir. */
export function stateDirOf(configured: string, stack: string, projectDir: string): string {
    return path.resolve(projectDir, configured === "" ? path.join(".pcp-eval-state", stack) : configured);
}

/** Reads and validates the running stack's configuration. */
export function loadConfig(projectDir: string): PcpEvalConfig {
    // Imported lazily so parseConfig stays usable without an engine.
    const pulumi: typeof import("@pulumi/pulumi") = require("@pulumi/pulumi");
    return parseConfig(pulumi.runtime.allConfig(), pulumi.getStack(), projectDir);
}
