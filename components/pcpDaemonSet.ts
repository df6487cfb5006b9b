// Types only at load: the SDK takes 0.15-0.5 s to load, and most stacks have no
// Kubernetes; the constructor loads it when a DaemonSet is really declared.
import type * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { hostCommand, HostCommandBackend } from "./hostCommand";
import { KubernetesConfig } from "./config";
import { constants } from "./constants";
import { checkImage, renderManifests } from "./k8sManifests";
import { hostResourceOptions, hostResourceType } from "./providerPlugin";
import { scriptCommandOutput } from "./shell";

export interface PcpDaemonSetArgs {
    /** Which backend runs host commands (pcp-eval:hostCommands). */
    hostCommands: HostCommandBackend;
    stack: string;
    kubernetes: KubernetesConfig;
    /** The image reference loaded into the local Docker daemon. */
    image: pulumi.Input<string>;
    /** The resource that loaded the image; the cluster load waits for it. */
    imageLoaded: pulumi.Resource;
    /** The image's docker-archive: a containerd cluster (kubernetes.containerd) imports it from there. */
    imageTarball?: pulumi.Input<string>;
    projectDir: string;
    /** Directory with namespace.yaml and daemonset.yaml; default the repo's manifests/. */
    manifestsDir?: string;
    /** How long create/update wait for the rollout. Default: timeoutsSeconds.services. */
    rolloutTimeoutSeconds?: number;
}

// ---------------------------------------------------------------------------
// Each node's endpoints, read from the DaemonSet's ready pods.

/** Each node's endpoints (provider/endpoints.go reads them from the ready pods). */
export interface NodeEndpoints {
    /** node name -> "address:port" of its pmcd. */
    pmcdEndpoints: Record<string, string>;
    /** node name -> pmproxy's URL. */
    pmproxyUrls: Record<string, string>;
}

/** Inputs of the endpoint reader. */
export interface DaemonSetEndpointsInputs {
    context: string;
    kubeconfig: string;
    namespace: string;
    /** Label selector of the DaemonSet's pods, "k=v,k=v". */
    selector: string;
    pmcdPort: number;
    pmproxyPort: number;
    /** Changes with every rollout (uid and generation), so the endpoints are read again. */
    revision: string;
    timeoutSeconds: number;
}

export interface DaemonSetEndpointsState extends DaemonSetEndpointsInputs, NodeEndpoints {}

type EndpointsArgs = { [K in keyof DaemonSetEndpointsInputs]: pulumi.Input<DaemonSetEndpointsInputs[K]> };

/**
 * The pmcd and pmproxy endpoints of every node running a ready PCP pod (the
 * pods use the host's network: a node's own address), read with kubectl by
 * the plugin (provider/endpoints.go); refresh sees nodes that joined or left.
 */
export class DaemonSetEndpoints extends pulumi.CustomResource {
    public declare readonly pmcdEndpoints: pulumi.Output<Record<string, string>>;
    public declare readonly pmproxyUrls: pulumi.Output<Record<string, string>>;

    constructor(name: string, args: EndpointsArgs, opts?: pulumi.CustomResourceOptions) {
        super(hostResourceType("DaemonSetEndpoints"), name, { ...args, pmcdEndpoints: undefined, pmproxyUrls: undefined }, hostResourceOptions("DaemonSetEndpoints", opts));
    }
}

// ---------------------------------------------------------------------------

/**
 * PCP on every node of a Kubernetes cluster: the image loaded into the
 * cluster's runtime, then the namespace and DaemonSet rendered from
 * manifests/ (components/k8sManifests.ts), created through a provider for the
 * configured context or kubeconfig. Create and update wait for the rollout
 * (the provider's await logic: every scheduled pod updated and ready).
 * Destroy deletes the namespace and everything in it.
 */
export class PcpDaemonSet extends pulumi.ComponentResource {
    public readonly namespace: pulumi.Output<string>;
    public readonly daemonSetName: pulumi.Output<string>;
    /** node name -> "address:port" of the node's pmcd. */
    public readonly pmcdEndpoints: pulumi.Output<Record<string, string>>;
    /** node name -> the node's pmproxy URL. */
    public readonly pmproxyUrls: pulumi.Output<Record<string, string>>;

    constructor(name: string, args: PcpDaemonSetArgs, opts?: pulumi.ComponentResourceOptions) {
        const kube = args.kubernetes;
        // Rendered before anything is registered: a bad namespace or template
        // fails here with the field named, leaving no half-built component.
        // Everything but the image is known now, so a preview shows the whole
        // DaemonSet; the image (a store-hash tag) is filled in when loaded.
        const rendered = renderManifests({
            image: "pending",
            namespace: kube.namespace,
            instance: `pcp-eval-${args.stack}`,
            managedBy: "pulumi",
            // The image is loaded into the cluster's runtime, never pulled.
            imagePullPolicy: "Never",
            manifestsDir: args.manifestsDir,
            hostUdev: kube.hostUdev,
        });
        super("pcp-eval:index:PcpDaemonSet", name, {}, opts);
        const timeoutSeconds = args.rolloutTimeoutSeconds ?? constants.timeoutsSeconds.services;
        const image = pulumi.output(args.image).apply(checkImage);
        const containerd = kube.containerd === "" ? {} : { containerd: kube.containerd };
        const fromTarball = kube.containerd !== "" && args.imageTarball !== undefined ? { tarball: args.imageTarball } : {};

        const clusterLoad = hostCommand(
            args.hostCommands,
            `${name}-cluster-load`,
            {
                create: scriptCommandOutput("oci.sh", "cluster-load", { image, context: kube.context, ...containerd, ...fromTarball }),
                delete: scriptCommandOutput("oci.sh", "cluster-remove", { image, context: kube.context, ...containerd }),
                dir: args.projectDir,
                triggers: [image, kube.context, kube.containerd],
            },
            { parent: this, dependsOn: [args.imageLoaded] },
        );
        const k8sLib: typeof import("@pulumi/kubernetes") = require("@pulumi/kubernetes");
        const provider = new k8sLib.Provider(
            `${name}-provider`,
            { context: kube.context, kubeconfig: kube.kubeconfig === "" ? undefined : kube.kubeconfig },
            { parent: this },
        );
        const ns = new k8sLib.core.v1.Namespace(
            `${name}-namespace`,
            { metadata: rendered.namespace.metadata as k8s.types.input.meta.v1.ObjectMeta },
            { parent: this, provider },
        );

        const dsSpec = rendered.daemonSet.spec!;
        const podSpec = dsSpec.template.spec!;
        const timeouts = { create: `${timeoutSeconds}s`, update: `${timeoutSeconds}s` };
        const ds = new k8sLib.apps.v1.DaemonSet(
            `${name}-daemonset`,
            {
                metadata: {
                    ...(rendered.daemonSet.metadata as k8s.types.input.meta.v1.ObjectMeta),
                    // From the Namespace resource: the DaemonSet waits for it.
                    namespace: ns.metadata.name,
                    // Wait for the rollout (the default, stated so nobody flips it).
                    annotations: { "pulumi.com/skipAwait": "false" },
                },
                spec: {
                    ...(dsSpec as k8s.types.input.apps.v1.DaemonSetSpec),
                    template: {
                        ...(dsSpec.template as k8s.types.input.core.v1.PodTemplateSpec),
                        spec: {
                            ...(podSpec as k8s.types.input.core.v1.PodSpec),
                            containers: podSpec.containers.map((c) => ({ ...(c as k8s.types.input.core.v1.Container), image })),
                        },
                    },
                },
            },
            { parent: this, provider, dependsOn: [clusterLoad], customTimeouts: timeouts },
        );

        const selector = Object.entries(dsSpec.selector.matchLabels ?? {})
            .map(([k, v]) => `${k}=${v}`)
            .join(",");
        const endpoints = new DaemonSetEndpoints(
            `${name}-endpoints`,
            {
                context: kube.context,
                kubeconfig: kube.kubeconfig,
                namespace: ds.metadata.namespace,
                selector,
                pmcdPort: constants.ports.pmcd,
                pmproxyPort: constants.ports.pmproxy,
                revision: ds.metadata.apply((m) => `${m.uid ?? ""}/${m.generation ?? ""}`),
                timeoutSeconds,
            },
            { parent: this, dependsOn: [ds] },
        );

        this.namespace = ns.metadata.name;
        this.daemonSetName = ds.metadata.name;
        this.pmcdEndpoints = endpoints.pmcdEndpoints.apply((e) => e ?? {});
        this.pmproxyUrls = endpoints.pmproxyUrls.apply((e) => e ?? {});
        this.registerOutputs({
            namespace: this.namespace,
            daemonSetName: this.daemonSetName,
            pmcdEndpoints: this.pmcdEndpoints,
            pmproxyUrls: this.pmproxyUrls,
        });
    }
}
