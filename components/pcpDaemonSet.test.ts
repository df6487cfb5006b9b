/**
 * PcpDaemonSet under Pulumi's mocks: the resources it registers, their
 * parents, the dependency edges the engine is given (the image load first,
 * then the cluster load, the namespace, the DaemonSet, the endpoint reader),
 * the inputs rendered from manifests/, and the endpoint reader's inputs on the
 * provider plugin (its logic on pod lists is provider/endpoints_test.go).
 */
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { recordProgram, resolve, type Recording } from "../test/helpers/mocks";
import { startProviderPlugin } from "../test/helpers/providerPlugin";
import type { KubernetesConfig } from "./config";
import { constants } from "./constants";
import { labelKeys, renderManifests } from "./k8sManifests";
import { PcpDaemonSet, type DaemonSetEndpointsInputs, type DaemonSetEndpointsState } from "./pcpDaemonSet";

const loadedImage = "pcp-eval:00000000000000000000000000000000"; // what the mocks' `oci.sh load` prints

function build(kube: Partial<KubernetesConfig> = {}, imageTarball?: string) {
    return () => {
        // Stands in for OciImage's `docker load`: the mocks answer it with loadedImage.
        const load = new command.local.Command("image-load", { create: "bash host/oci.sh load --tarball /nix/store/x-pcp-container.tar.gz" });
        const image = load.stdout.apply((out) => (JSON.parse(out) as { image: string }).image);
        const component = new PcpDaemonSet("pcp-daemonset", {
            stack: "test",
            kubernetes: { context: "pe7-ctx", kubeconfig: "", namespace: "pe7-pcp", containerd: "", hostUdev: true, ...kube },
            image,
            imageLoaded: load,
            imageTarball,
            hostCommands: "command",
            projectDir: "/work/pcp-eval",
        });
        return { component, image };
    };
}

async function recorded(kube: Partial<KubernetesConfig> = {}, preview = false, imageTarball?: string) {
    const { recording, result } = await recordProgram(build(kube, imageTarball), { preview, stack: "test" });
    return { recording, component: result.component };
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => v as Obj;

function containersOf(recording: Recording): Obj[] {
    const spec = obj(recording.byName("pcp-daemonset-daemonset").inputs.spec);
    return obj(obj(obj(spec.template).spec)).containers as Obj[];
}

describe("PcpDaemonSet (mocks)", () => {
    it("registers the cluster load, provider, namespace, DaemonSet and endpoint reader, all inside the component", async () => {
        const { recording } = await recorded();
        const children = recording.childrenOf("pcp-daemonset").map((r) => `${r.type} ${r.name}`).sort();
        assert.deepEqual(children, [
            "command:local:Command pcp-daemonset-cluster-load",
            "kubernetes:apps/v1:DaemonSet pcp-daemonset-daemonset",
            "kubernetes:core/v1:Namespace pcp-daemonset-namespace",
            "pcp-eval:index:DaemonSetEndpoints pcp-daemonset-endpoints",
            "pulumi:providers:kubernetes pcp-daemonset-provider",
        ]);
    });

    it("waits for the image load: cluster load after docker load, DaemonSet after cluster load and namespace, endpoints after the DaemonSet", async () => {
        const { recording } = await recorded();
        assert.ok(recording.dependencyNames("pcp-daemonset-cluster-load").includes("image-load"));
        const dsDeps = recording.dependencyNames("pcp-daemonset-daemonset");
        assert.ok(dsDeps.includes("pcp-daemonset-cluster-load"), `DaemonSet deps: ${dsDeps.join(", ")}`);
        assert.ok(dsDeps.includes("pcp-daemonset-namespace"), `DaemonSet deps: ${dsDeps.join(", ")}`);
        assert.ok(recording.dependencyNames("pcp-daemonset-endpoints").includes("pcp-daemonset-daemonset"));
        // The namespace needs neither image nor cluster load: it can be created meanwhile.
        assert.ok(!recording.dependencyNames("pcp-daemonset-namespace").some((n) => n.includes("load")));
    });

    it("loads exactly the image docker loaded into the configured context, and removes it on delete", async () => {
        const { recording } = await recorded();
        const load = recording.byName("pcp-daemonset-cluster-load").inputs;
        assert.equal(load.create, `bash host/oci.sh cluster-load --image ${loadedImage} --context pe7-ctx`);
        assert.equal(load.delete, `bash host/oci.sh cluster-remove --image ${loadedImage} --context pe7-ctx`);
        assert.deepEqual(load.triggers, [loadedImage, "pe7-ctx", ""]);
    });

    it("names the nodes' containerd socket to the cluster load and removal when kubeContainerd is set", async () => {
        const { recording } = await recorded({ containerd: "/run/k3s/containerd/containerd.sock" });
        const load = recording.byName("pcp-daemonset-cluster-load").inputs;
        const flags = `--image ${loadedImage} --context pe7-ctx --containerd /run/k3s/containerd/containerd.sock`;
        assert.equal(load.create, `bash host/oci.sh cluster-load ${flags}`);
        assert.equal(load.delete, `bash host/oci.sh cluster-remove ${flags}`);
        assert.deepEqual(load.triggers, [loadedImage, "pe7-ctx", "/run/k3s/containerd/containerd.sock"]);
    });

    it("imports the image's tarball into a containerd cluster (no Docker), and ignores the tarball for other clusters", async () => {
        const tarball = "/nix/store/x-pcp-container.tar.gz";
        const withContainerd = (await recorded({ containerd: "/run/containerd/containerd.sock" }, false, tarball)).recording.byName("pcp-daemonset-cluster-load").inputs;
        assert.equal(withContainerd.create, `bash host/oci.sh cluster-load --image ${loadedImage} --context pe7-ctx --containerd /run/containerd/containerd.sock --tarball ${tarball}`);
        const minikube = (await recorded({}, false, tarball)).recording.byName("pcp-daemonset-cluster-load").inputs;
        assert.equal(minikube.create, `bash host/oci.sh cluster-load --image ${loadedImage} --context pe7-ctx`);
    });

    it("every container runs the loaded image and never pulls it", async () => {
        const { recording } = await recorded();
        const containers = containersOf(recording);
        assert.deepEqual(containers.map((c) => c.name), ["pmcd", "pmproxy"]);
        for (const c of containers) {
            assert.equal(c.image, loadedImage);
            assert.equal(c.imagePullPolicy, "Never");
        }
    });

    it("creates what manifests/ renders for the config, plus the await annotation", async () => {
        const { recording } = await recorded();
        const want = renderManifests({ image: loadedImage, namespace: "pe7-pcp", instance: "pcp-eval-test", managedBy: "pulumi", imagePullPolicy: "Never" });
        assert.deepEqual(recording.byName("pcp-daemonset-namespace").inputs.metadata, want.namespace.metadata);
        const ds = recording.byName("pcp-daemonset-daemonset").inputs;
        assert.deepEqual(ds.spec, want.daemonSet.spec);
        assert.deepEqual(ds.metadata, { ...want.daemonSet.metadata, annotations: { "pulumi.com/skipAwait": "false" } });
        assert.equal(obj(ds.metadata).namespace, "pe7-pcp");
        assert.equal(obj(obj(ds.metadata).labels)[labelKeys.instance], "pcp-eval-test");
    });

    it("the provider targets the configured context, and the kubeconfig only when one is set", async () => {
        const plain = await recorded();
        assert.equal(plain.recording.byName("pcp-daemonset-provider").inputs.context, "pe7-ctx");
        assert.equal(plain.recording.byName("pcp-daemonset-provider").inputs.kubeconfig, undefined);
        const withFile = await recorded({ kubeconfig: "/tmp/pe7-kubeconfig" });
        assert.equal(withFile.recording.byName("pcp-daemonset-provider").inputs.kubeconfig, "/tmp/pe7-kubeconfig");
    });

    it("the endpoint reader lists the DaemonSet's pods by its selector, with the constants' ports", async () => {
        const { recording } = await recorded();
        const e = recording.byName("pcp-daemonset-endpoints").inputs;
        assert.equal(e.context, "pe7-ctx");
        assert.equal(e.namespace, "pe7-pcp");
        assert.equal(e.selector, `${labelKeys.name}=pcp,${labelKeys.instance}=pcp-eval-test`);
        assert.equal(e.pmcdPort, constants.ports.pmcd);
        assert.equal(e.pmproxyPort, constants.ports.pmproxy);
        assert.equal(e.timeoutSeconds, constants.timeoutsSeconds.services);
    });

    it("outputs the namespace and the DaemonSet's name", async () => {
        const { component } = await recorded();
        assert.equal(await resolve(component.namespace), "pe7-pcp");
        assert.equal(await resolve(component.daemonSetName), constants.kubernetes.daemonSetName);
        assert.deepEqual(await resolve(component.pmcdEndpoints), {});
    });

    it("preview: before the image is loaded the whole DaemonSet but its image is known", async () => {
        const { recording } = await recorded({}, true);
        const spec = obj(recording.byName("pcp-daemonset-daemonset").inputs.spec);
        assert.equal(obj(obj(obj(spec.template).spec)).hostNetwork, true);
        assert.deepEqual(obj(spec.selector).matchLabels, { [labelKeys.name]: "pcp", [labelKeys.instance]: "pcp-eval-test" });
        assert.ok(recording.dependencyNames("pcp-daemonset-cluster-load").includes("image-load"));
    });

    it("a bad namespace in the config fails at construction, naming the field, before registering anything", () => {
        assert.throws(
            () =>
                new PcpDaemonSet("bad", {
                    stack: "test",
                    kubernetes: { context: "c", kubeconfig: "", namespace: "Not_Valid", containerd: "", hostUdev: true },
                    image: pulumi.output(loadedImage),
                    // Never reached: the constructor fails before it registers or uses anything.
                    imageLoaded: {} as pulumi.Resource,
                    hostCommands: "command",
                    projectDir: "/",
                }),
            /namespace "Not_Valid" is not a valid Kubernetes name/,
        );
    });
});

describe("the endpoint reader on the provider plugin", () => {
    it("the inputs the component registers pass the plugin's check, and its create, read and diff list pods with kubectl", async (t) => {
        const { recording } = await recorded({ kubeconfig: "/tmp/pe7-kubeconfig" });
        // As the engine sends them: what the component registered, outputs (undefined) left out.
        const inputs = JSON.parse(JSON.stringify(recording.byName("pcp-daemonset-endpoints").inputs)) as DaemonSetEndpointsInputs;
        assert.deepEqual(Object.keys(inputs).sort(), ["context", "kubeconfig", "namespace", "pmcdPort", "pmproxyPort", "revision", "selector", "timeoutSeconds"]);

        // A stand-in kubectl, first on the plugin's PATH, that records its arguments and answers with two pods.
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe7-kubectl-"));
        t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
        const pods = {
            items: ["node-a", "node-b"].map((node, i) => ({
                metadata: { name: `pcp-${node}` },
                spec: { nodeName: node },
                status: { phase: "Running", hostIP: `192.0.2.${i + 1}`, conditions: [{ type: "Ready", status: "True" }] },
            })),
        };
        fs.writeFileSync(path.join(dir, "pods.json"), JSON.stringify(pods));
        fs.writeFileSync(path.join(dir, "kubectl"), `#!/bin/sh\nprintf '%s\\n' "$@" > "${dir}/args"\ncat "${dir}/pods.json"\n`, { mode: 0o755 });
        const plugin = await startProviderPlugin({ env: { ...process.env, PATH: `${dir}:${process.env.PATH ?? "/usr/bin:/bin"}` } });
        t.after(() => plugin.close());
        const provider = plugin.resource<DaemonSetEndpointsState>("DaemonSetEndpoints");

        const checked = await provider.check({}, inputs);
        assert.deepEqual(checked.failures, []);
        assert.deepEqual(checked.inputs, inputs);
        const created = await provider.create(inputs);
        assert.equal(created.id, `pe7-ctx/pe7-pcp/${inputs.selector}`);
        const outs = created.outs;
        assert.deepEqual(outs.pmcdEndpoints, { "node-a": `192.0.2.1:${constants.ports.pmcd}`, "node-b": `192.0.2.2:${constants.ports.pmcd}` });
        assert.deepEqual(outs.pmproxyUrls, { "node-a": `http://192.0.2.1:${constants.ports.pmproxy}`, "node-b": `http://192.0.2.2:${constants.ports.pmproxy}` });
        assert.deepEqual(fs.readFileSync(path.join(dir, "args"), "utf8").trim().split("\n"), [
            "--context", "pe7-ctx", "--kubeconfig", "/tmp/pe7-kubeconfig", "--namespace", "pe7-pcp",
            "get", "pods", "--selector", inputs.selector, "--output", "json",
        ]);

        // refresh: a node left.
        fs.writeFileSync(path.join(dir, "pods.json"), JSON.stringify({ items: pods.items.slice(1) }));
        const read = await provider.read(created.id, outs);
        assert.deepEqual(read.props?.pmcdEndpoints, { "node-b": `192.0.2.2:${constants.ports.pmcd}` });

        // A new rollout (revision) is a change; the same inputs are not.
        assert.equal((await provider.diff(created.id, outs, { ...inputs })).changes, false);
        const rollout = await provider.diff(created.id, outs, { ...inputs, revision: "uid/2" });
        assert.deepEqual({ changes: rollout.changes, replaces: rollout.replaces, diffs: rollout.diffs }, { changes: true, replaces: [], diffs: ["revision"] });

        // kubectl failing: an error that names the command and kubectl's message.
        fs.writeFileSync(path.join(dir, "kubectl"), "#!/bin/sh\necho 'error: context \"pe7-ctx\" does not exist' >&2\nexit 1\n", { mode: 0o755 });
        await assert.rejects(provider.create(inputs), /kubectl --context pe7-ctx .* failed \(exit 1\):\nerror: context "pe7-ctx" does not exist/);
    });

    it("the plugin's check names a missing or empty input", async (t) => {
        const plugin = await startProviderPlugin();
        t.after(() => plugin.close());
        const { failures } = await plugin.resource("DaemonSetEndpoints").check({}, { context: "c", namespace: "", selector: "a=b", kubeconfig: "" });
        assert.deepEqual(failures, [
            { property: "namespace", reason: "must not be empty" },
            { property: "revision", reason: "is required" },
        ]);
    });
});
