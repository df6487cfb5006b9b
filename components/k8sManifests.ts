/**
 * Renders the Kubernetes manifests in manifests/ (namespace.yaml,
 * daemonset.yaml) into typed objects, and dumps them back to YAML.
 *
 * Pure functions: they read the two template files and nix/constants.json and
 * nothing else; no cluster, no Pulumi. PcpDaemonSet creates the rendered
 * objects with @pulumi/kubernetes, `npm run render:manifests` writes them for
 * `kubectl apply -f`.
 *
 * What the renderer owns (the templates leave these to it):
 *   - names: the namespace, the DaemonSet's name and namespace;
 *   - labels app.kubernetes.io/{name,instance,component,part-of,managed-by}
 *     on the namespace, the DaemonSet and its pod template; the selector
 *     matches name and instance;
 *   - every container's image (and optionally its pull policy);
 *   - ports: the pmcd and pmproxy container ports (hostNetwork, so they are
 *     the node's ports), the daemons' `-p PORT` arguments and PMCD_PORT for
 *     pmproxy, all from nix/constants.json, the only home of port numbers;
 *   - the pod's runAsUser/runAsGroup: the image's pcp user from constants.
 */
import * as fs from "node:fs";
import * as path from "node:path";
// Loaded on first use: the program imports this module on every run, but parses
// and dumps YAML only for a Kubernetes stack or `npm run render:manifests`.
const yaml = (): typeof import("yaml") => require("yaml");
// Types only (erased when compiled): kubernetes-models carries the Kubernetes
// OpenAPI types; its validators are used by the tests.
import type { IDaemonSet } from "kubernetes-models/apps/v1/DaemonSet";
import type { INamespace } from "kubernetes-models/v1/Namespace";
import type { IContainer } from "kubernetes-models/v1/Container";
import { constants } from "./constants";

export type { IDaemonSet, INamespace, IContainer };

/** The directory holding namespace.yaml and daemonset.yaml in this repository. */
export const defaultManifestsDir = path.resolve(__dirname, "..", "manifests");

export const templateFiles = { namespace: "namespace.yaml", daemonSet: "daemonset.yaml" } as const;

/** Names of the two containers the DaemonSet template must define. */
export const containerNames = { pmcd: "pmcd", pmproxy: "pmproxy" } as const;

export type PullPolicy = "Always" | "IfNotPresent" | "Never";

export interface RenderArgs {
    /** Image reference both containers run, e.g. "pcp-eval:<storehash>". */
    image: string;
    /** Namespace to create and deploy into. Default: constants kubernetes.namespace. */
    namespace?: string;
    /** The DaemonSet's name. Default: constants kubernetes.daemonSetName. */
    name?: string;
    /** app.kubernetes.io/instance, e.g. the stack name. */
    instance: string;
    /** app.kubernetes.io/managed-by. Default "pulumi". */
    managedBy?: string;
    /** Overrides the templates' imagePullPolicy when given. */
    imagePullPolicy?: PullPolicy;
    /** Directory with namespace.yaml and daemonset.yaml. Default: the repo's manifests/. */
    manifestsDir?: string;
    /**
     * Mount the node's udev database (/run/udev, persistent device names) read-only.
     * Default true. A node without udev has no /run/udev, and the hostPath check
     * (type Directory: we never create it on the node) would keep the pod waiting.
     */
    hostUdev?: boolean;
}

/** The template's volume of the node's /run/udev (dropped with hostUdev false). */
const udevVolume = "host-run-udev";

export interface RenderedManifests {
    namespace: INamespace;
    daemonSet: IDaemonSet;
}

export const labelKeys = {
    name: "app.kubernetes.io/name",
    instance: "app.kubernetes.io/instance",
    component: "app.kubernetes.io/component",
    partOf: "app.kubernetes.io/part-of",
    managedBy: "app.kubernetes.io/managed-by",
} as const;

/** Port numbers the renderer writes, from nix/constants.json. */
export const ports = { pmcd: constants.ports.pmcd, pmproxy: constants.ports.pmproxy } as const;

/** The pmcd endpoint of a node whose address is `address` (hostNetwork: the node's own address). */
export function pmcdEndpoint(address: string): string {
    return address.includes(":") ? `[${address}]:${ports.pmcd}` : `${address}:${ports.pmcd}`;
}

/** Thrown for bad arguments or a template the renderer cannot use; the message names the field and the fix. */
export class ManifestError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "ManifestError";
    }
}

const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const labelValue = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
// An image reference: no whitespace, no uppercase in the repository part is
// left to the runtime; reject what can never be one.
const imageRef = /^[^\s:@/][^\s]*$/;

function checkDnsLabel(field: string, value: string): void {
    if (value.length === 0 || value.length > 63 || !dns1123Label.test(value)) {
        throw new ManifestError(
            `${field} "${value}" is not a valid Kubernetes name: use 1 to 63 lowercase letters, digits or '-', ` +
                `starting and ending with a letter or digit (e.g. "pcp")`,
        );
    }
}

function checkLabelValue(field: string, value: string): void {
    if (value.length === 0 || value.length > 63 || !labelValue.test(value)) {
        throw new ManifestError(
            `${field} "${value}" is not a valid label value: use 1 to 63 letters, digits, '-', '_' or '.', ` +
                `starting and ending with a letter or digit (e.g. the stack name "dev")`,
        );
    }
}

/** Returns `image` when it can be an image reference; throws ManifestError otherwise. */
export function checkImage(image: string): string {
    if (typeof image !== "string" || !imageRef.test(image)) {
        throw new ManifestError(
            `image "${String(image)}" is not an image reference: pass the tag loaded into the cluster, ` +
                `e.g. "${constants.container.imageName}:<storehash>"`,
        );
    }
    return image;
}

function checkArgs(args: RenderArgs): Required<Omit<RenderArgs, "imagePullPolicy">> & { imagePullPolicy?: PullPolicy } {
    checkImage(args.image);
    const namespace = args.namespace ?? constants.kubernetes.namespace;
    const name = args.name ?? constants.kubernetes.daemonSetName;
    const managedBy = args.managedBy ?? "pulumi";
    checkDnsLabel("namespace", namespace);
    checkDnsLabel("name", name);
    checkLabelValue("instance", args.instance);
    checkLabelValue("managedBy", managedBy);
    const policies: PullPolicy[] = ["Always", "IfNotPresent", "Never"];
    if (args.imagePullPolicy !== undefined && !policies.includes(args.imagePullPolicy)) {
        throw new ManifestError(`imagePullPolicy "${String(args.imagePullPolicy)}" must be one of ${policies.join(", ")}`);
    }
    return {
        image: args.image,
        namespace,
        name,
        instance: args.instance,
        managedBy,
        imagePullPolicy: args.imagePullPolicy,
        manifestsDir: args.manifestsDir ?? defaultManifestsDir,
        hostUdev: args.hostUdev ?? true,
    };
}

function isRecord(value: unknown): value is Record<string, unknown> {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Parses one template file that must hold exactly one object of `apiVersion`/`kind`. */
function loadTemplate(dir: string, file: string, apiVersion: string, kind: string): Record<string, unknown> {
    const full = path.join(dir, file);
    let text: string;
    try {
        text = fs.readFileSync(full, "utf8");
    } catch (err) {
        throw new ManifestError(`cannot read ${full}: ${(err as Error).message}; pass manifestsDir pointing at the manifests/ directory`);
    }
    const docs = yaml().parseAllDocuments(text);
    if (docs.length !== 1) {
        throw new ManifestError(`${full} must hold exactly one YAML document, found ${docs.length}`);
    }
    const doc = docs[0];
    if (doc.errors.length > 0) {
        throw new ManifestError(`${full} is not valid YAML: ${doc.errors[0].message}`);
    }
    const obj: unknown = doc.toJS();
    if (!isRecord(obj) || obj.apiVersion !== apiVersion || obj.kind !== kind) {
        throw new ManifestError(`${full} must hold one ${apiVersion} ${kind}`);
    }
    return obj;
}

function findContainer(containers: IContainer[], name: string, file: string): IContainer {
    const c = containers.find((x) => x.name === name);
    if (c === undefined) {
        throw new ManifestError(`${file} must define a container named "${name}" in spec.template.spec.containers`);
    }
    return c;
}

/** The renderer owns ports: a template that writes them would restate nix/constants.json. */
function claimPorts(c: IContainer, file: string): void {
    if (c.ports !== undefined) {
        throw new ManifestError(
            `${file}: container "${c.name}" sets ports; remove them, the renderer sets ports from nix/constants.json`,
        );
    }
    if ((c.args ?? []).some((a) => a === "-p" || a.startsWith("--port"))) {
        throw new ManifestError(
            `${file}: container "${c.name}" passes a port argument; remove it, the renderer adds "-p" from nix/constants.json`,
        );
    }
    if ((c.env ?? []).some((e) => e.name === "PMCD_PORT" || e.name === "PMPROXY_PORT")) {
        throw new ManifestError(`${file}: container "${c.name}" sets a *_PORT variable; remove it, the renderer sets it`);
    }
}

/**
 * Loads manifests/namespace.yaml and manifests/daemonset.yaml and returns the
 * objects with names, labels, image, ports and user set from `args` and
 * nix/constants.json. Throws ManifestError naming the field on bad input.
 */
export function renderManifests(args: RenderArgs): RenderedManifests {
    const a = checkArgs(args);
    const nsTemplate = loadTemplate(a.manifestsDir, templateFiles.namespace, "v1", "Namespace");
    const dsTemplate = loadTemplate(a.manifestsDir, templateFiles.daemonSet, "apps/v1", "DaemonSet");
    const namespace = nsTemplate as unknown as INamespace;
    const daemonSet = dsTemplate as unknown as IDaemonSet;
    const dsFile = path.join(a.manifestsDir, templateFiles.daemonSet);

    const spec = daemonSet.spec;
    const podSpec = spec?.template.spec;
    if (spec === undefined || podSpec === undefined || !Array.isArray(podSpec.containers)) {
        throw new ManifestError(`${dsFile} must have spec.template.spec.containers`);
    }
    const templateLabels = daemonSet.metadata?.labels ?? {};
    const appName = templateLabels[labelKeys.name];
    if (appName === undefined) {
        throw new ManifestError(`${dsFile} must set metadata.labels["${labelKeys.name}"]`);
    }

    const labels: Record<string, string> = {
        ...templateLabels,
        [labelKeys.name]: appName,
        [labelKeys.instance]: a.instance,
        [labelKeys.managedBy]: a.managedBy,
    };
    const selector: Record<string, string> = { [labelKeys.name]: appName, [labelKeys.instance]: a.instance };

    // Namespace: its name, the common labels (without component: the namespace
    // is not the collector) and the template's own labels (pod security).
    const nsLabels: Record<string, string> = { ...(namespace.metadata?.labels ?? {}) };
    for (const key of [labelKeys.name, labelKeys.instance, labelKeys.partOf, labelKeys.managedBy]) {
        const value = labels[key];
        if (value !== undefined) nsLabels[key] = value;
    }
    namespace.metadata = { ...(namespace.metadata ?? {}), name: a.namespace, labels: nsLabels };

    daemonSet.metadata = { ...(daemonSet.metadata ?? {}), name: a.name, namespace: a.namespace, labels: { ...labels } };
    spec.selector = { matchLabels: selector };
    spec.template.metadata = {
        ...(spec.template.metadata ?? {}),
        labels: { ...(spec.template.metadata?.labels ?? {}), ...labels },
    };

    for (const c of podSpec.containers) {
        c.image = a.image;
        if (a.imagePullPolicy !== undefined) c.imagePullPolicy = a.imagePullPolicy;
    }

    const pmcd = findContainer(podSpec.containers, containerNames.pmcd, dsFile);
    const pmproxy = findContainer(podSpec.containers, containerNames.pmproxy, dsFile);
    claimPorts(pmcd, dsFile);
    claimPorts(pmproxy, dsFile);
    pmcd.ports = [{ name: "pmcd", containerPort: ports.pmcd, hostPort: ports.pmcd, protocol: "TCP" }];
    pmcd.args = [...(pmcd.args ?? []), "-p", String(ports.pmcd)];
    pmproxy.ports = [{ name: "pmproxy", containerPort: ports.pmproxy, hostPort: ports.pmproxy, protocol: "TCP" }];
    pmproxy.args = [...(pmproxy.args ?? []), "-p", String(ports.pmproxy)];
    pmproxy.env = [...(pmproxy.env ?? []), { name: "PMCD_PORT", value: String(ports.pmcd) }];

    if (!a.hostUdev) {
        podSpec.volumes = (podSpec.volumes ?? []).filter((v) => v.name !== udevVolume);
        for (const c of podSpec.containers) c.volumeMounts = (c.volumeMounts ?? []).filter((m) => m.name !== udevVolume);
    }

    podSpec.securityContext = {
        ...(podSpec.securityContext ?? {}),
        runAsUser: constants.container.uid,
        runAsGroup: constants.container.gid,
    };

    return { namespace, daemonSet };
}

export interface DumpedManifests {
    "namespace.yaml": string;
    "daemonset.yaml": string;
    /** Namespace first, then the DaemonSet: one file for `kubectl apply -f`. */
    "all.yaml": string;
}

const header =
    "# Rendered from manifests/ by components/k8sManifests.ts (npm run render:manifests); edit the templates, not this file.\n";

function dumpOne(obj: object): string {
    return yaml().stringify(obj, { lineWidth: 0 });
}

/** YAML text of the rendered objects: one file each and one combined. */
export function dumpManifests(m: RenderedManifests): DumpedManifests {
    const ns = dumpOne(m.namespace);
    const ds = dumpOne(m.daemonSet);
    return {
        "namespace.yaml": header + ns,
        "daemonset.yaml": header + ds,
        "all.yaml": header + ns + "---\n" + ds,
    };
}
