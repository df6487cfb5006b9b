import * as command from "@pulumi/command";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { KubernetesConfig } from "./config";
import { constants } from "./constants";
import { scriptCommandOutput } from "./shell";

export interface PcpDaemonSetArgs {
    stack: string;
    kubernetes: KubernetesConfig;
    /** The image reference loaded into the local Docker daemon. */
    image: pulumi.Input<string>;
    /** The resource that loaded the image; the cluster load waits for it. */
    imageLoaded: pulumi.Resource;
    projectDir: string;
}

/**
 * PCP on every node of a Kubernetes cluster: the image loaded into the
 * cluster's runtime, a namespace, and a DaemonSet running pmcd and pmproxy.
 * Destroy deletes the namespace and everything in it.
 */
export class PcpDaemonSet extends pulumi.ComponentResource {
    public readonly namespace: pulumi.Output<string>;
    public readonly daemonSetName: pulumi.Output<string>;

    constructor(name: string, args: PcpDaemonSetArgs, opts?: pulumi.ComponentResourceOptions) {
        super("pcp-eval:index:PcpDaemonSet", name, {}, opts);
        const kube = args.kubernetes;
        const clusterLoad = new command.local.Command(
            `${name}-cluster-load`,
            {
                create: scriptCommandOutput("oci.sh", "cluster-load", { image: args.image, context: kube.context }),
                delete: scriptCommandOutput("oci.sh", "cluster-remove", { image: args.image, context: kube.context }),
                dir: args.projectDir,
                triggers: [args.image, kube.context],
            },
            { parent: this, dependsOn: [args.imageLoaded] },
        );
        const provider = new k8s.Provider(
            `${name}-provider`,
            { context: kube.context, kubeconfig: kube.kubeconfig === "" ? undefined : kube.kubeconfig },
            { parent: this },
        );
        const labels = {
            "app.kubernetes.io/name": "pcp",
            "app.kubernetes.io/instance": `pcp-eval-${args.stack}`,
            "app.kubernetes.io/component": "pmcd",
            "app.kubernetes.io/part-of": "pcp-eval",
            "app.kubernetes.io/managed-by": "pulumi",
        };
        const ns = new k8s.core.v1.Namespace(
            `${name}-namespace`,
            { metadata: { name: kube.namespace, labels } },
            { parent: this, provider },
        );
        const ds = new k8s.apps.v1.DaemonSet(
            `${name}-daemonset`,
            {
                metadata: { name: constants.kubernetes.daemonSetName, namespace: ns.metadata.name, labels },
                spec: {
                    selector: { matchLabels: { "app.kubernetes.io/name": labels["app.kubernetes.io/name"], "app.kubernetes.io/instance": labels["app.kubernetes.io/instance"] } },
                    template: {
                        metadata: { labels },
                        spec: {
                            hostNetwork: true,
                            hostPID: true,
                            containers: [
                                {
                                    name: "pmcd",
                                    image: args.image,
                                    imagePullPolicy: "Never",
                                    ports: [
                                        { name: "pmcd", containerPort: constants.ports.pmcd },
                                        { name: "pmproxy", containerPort: constants.ports.pmproxy },
                                    ],
                                    readinessProbe: { tcpSocket: { port: constants.ports.pmcd } },
                                    livenessProbe: { tcpSocket: { port: constants.ports.pmcd } },
                                },
                            ],
                        },
                    },
                },
            },
            { parent: this, provider, dependsOn: [clusterLoad] },
        );
        this.namespace = ns.metadata.name;
        this.daemonSetName = ds.metadata.name;
        this.registerOutputs({ namespace: this.namespace, daemonSetName: this.daemonSetName });
    }
}
