/**
 * The one-node cluster of test/helpers/cluster.ts, for real: the node
 * registers with its own address and becomes Ready; kubelet runs a pod on
 * containerd; Pod Security admission of the real apiserver admits the
 * project's namespace labels and DaemonSet pod and shows what it rejects;
 * `oci.sh cluster-load --containerd` puts an image where the CRI plugin finds
 * it and `cluster-remove` takes it away; stop() leaves nothing behind.
 */
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { renderManifests } from "../../components/k8sManifests";
import { clusterUnavailableReason, startCluster, type Cluster } from "../helpers/cluster";
import { repoRoot } from "../helpers/engine";
import { run } from "../helpers/run";
import { requireTools } from "../helpers/tools";

const ociSh = path.join(repoRoot, "host", "oci.sh");

interface PodJson {
    metadata: { name: string; uid: string };
    status: { phase?: string; hostIP?: string; containerStatuses?: Array<{ containerID?: string; ready: boolean }> };
}

describe("a one-node cluster built here (test/helpers/cluster.ts)", { timeout: 15 * 60_000 }, () => {
    let cluster: Cluster | undefined;
    let stopped = false;
    let reason: string | undefined;

    before(async () => {
        reason = clusterUnavailableReason();
        if (reason === undefined) cluster = await startCluster({ prefix: "pe14" });
    });
    after(async () => {
        if (cluster && !stopped) await cluster.stop();
    });
    const need = (t: TestContext): Cluster | undefined => {
        if (!requireTools(t, [[reason ?? "", () => reason === undefined]])) return undefined;
        return cluster;
    };

    it("the node registers with its own (non-loopback) address, runs kubelet 1.34 and is Ready", async (t) => {
        const c = need(t);
        if (!c) return;
        const node = JSON.parse(await c.kubectl(["get", "node", c.nodeName, "-o", "json"])) as {
            status: { addresses: Array<{ type: string; address: string }>; nodeInfo: { kubeletVersion: string; containerRuntimeVersion: string }; conditions: Array<{ type: string; status: string }> };
        };
        assert.deepEqual(node.status.addresses.find((a) => a.type === "InternalIP")?.address, c.nodeIp);
        assert.match(node.status.nodeInfo.kubeletVersion, /^v1\.34\./);
        assert.match(node.status.nodeInfo.containerRuntimeVersion, /^containerd:\/\//);
        assert.equal(node.status.conditions.find((x) => x.type === "Ready")?.status, "True");
    });

    it("kubelet runs a hostNetwork pod on containerd (the locally built pause image), and deleting it removes its containers", async (t) => {
        const c = need(t);
        if (!c) return;
        const pauseRef = fs.readFileSync(path.join(c.binDir, "..", "images", "pause.ref"), "utf8").trim();
        const pod = {
            apiVersion: "v1",
            kind: "Pod",
            metadata: { name: "pe14-pause", namespace: "default" },
            spec: {
                automountServiceAccountToken: false,
                // The node's network, as the PCP DaemonSet's pods: the cluster's CNI
                // network is loopback only, which containerd 1.6 refuses for a pod
                // of its own network ("failed to find network info for sandbox": no eth0).
                hostNetwork: true,
                containers: [{
                    name: "pause",
                    image: pauseRef,
                    imagePullPolicy: "Never",
                    securityContext: { runAsNonRoot: true, runAsUser: 65535, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, seccompProfile: { type: "RuntimeDefault" } },
                }],
            },
        };
        const file = path.join(c.dir, "pause-pod.json");
        fs.writeFileSync(file, JSON.stringify(pod));
        await c.kubectl(["apply", "-f", file]);
        try {
            await c.kubectl(["wait", "--for=condition=Ready", "pod/pe14-pause", "--timeout=120s"], 150_000);
        } catch (err) {
            throw new Error(`${(err as Error).message}\n${await c.diagnose("default")}`);
        }
        const got = JSON.parse(await c.kubectl(["get", "pod", "pe14-pause", "-o", "json"])) as PodJson;
        assert.equal(got.status.phase, "Running");
        // What a failure message would carry: the pod, its running container, its image, the node's logs.
        const diagnosis = await c.diagnose("default");
        assert.match(diagnosis, /^--- pods in default\n.*\npe14-pause +1\/1 +Running /m, diagnosis);
        assert.match(diagnosis, /^pe14-pause: \[.*"running":\{"startedAt"/m, diagnosis);
        assert.ok(diagnosis.split("\n").includes(pauseRef), `${pauseRef} among the images: ${diagnosis}`);
        for (const part of ["--- events in default", "--- kubelet log", "--- containerd log"]) assert.ok(diagnosis.includes(part), `${part}: ${diagnosis}`);
        assert.ok(!diagnosis.includes("(could not read:"), diagnosis);
        assert.equal(got.status.hostIP, c.nodeIp);
        const id = got.status.containerStatuses?.[0]?.containerID?.replace(/^containerd:\/\//, "") ?? "";
        assert.ok((await c.ctr(["containers", "list", "--quiet"])).split("\n").includes(id), `container ${id} is in containerd`);
        await c.kubectl(["delete", "pod", "pe14-pause", "--wait=true", "--timeout=120s"], 150_000);
        // kubelet removes the exited container soon after the pod is gone.
        const deadline = Date.now() + 120_000;
        while ((await c.ctr(["containers", "list", "--quiet"])).split("\n").includes(id)) {
            assert.ok(Date.now() < deadline, `container ${id} still in containerd 120s after its pod was deleted`);
            await new Promise((r) => setTimeout(r, 1000));
        }
    });

    it("Pod Security: the project's namespace labels and DaemonSet pod are admitted; the same pod is rejected under baseline and restricted, naming why, and an invalid level is refused", async (t) => {
        const c = need(t);
        if (!c) return;
        const rendered = renderManifests({ image: "pcp-eval:psa", namespace: "pe14-psa", instance: "pe14-psa", managedBy: "kubectl", imagePullPolicy: "Never" });
        const dir = fs.mkdtempSync(path.join(c.dir, "psa-"));
        // The namespace for real (its pod-security labels pass admission), the DaemonSet as a server-side dry run.
        fs.writeFileSync(path.join(dir, "namespace.json"), JSON.stringify(rendered.namespace));
        fs.writeFileSync(path.join(dir, "daemonset.json"), JSON.stringify(rendered.daemonSet));
        t.after(() => c.kubectl(["delete", "namespace", "pe14-psa", "pe14-baseline", "pe14-restricted", "pe14-bogus", "--ignore-not-found", "--wait=false"]).then(() => undefined));
        await c.kubectl(["create", "-f", path.join(dir, "namespace.json")]);
        const labels = JSON.parse(await c.kubectl(["get", "namespace", "pe14-psa", "-o", "jsonpath={.metadata.labels}"])) as Record<string, string>;
        assert.equal(labels["pod-security.kubernetes.io/enforce"], "privileged");
        const ds = await c.exec(path.join(c.binDir, "kubectl"), ["--context", c.context, "create", "--dry-run=server", "-f", path.join(dir, "daemonset.json")]);
        assert.equal(ds.code, 0, `the DaemonSet passes validation and admission: ${ds.stderr}`);

        const podFor = (namespace: string): string => {
            const file = path.join(dir, `${namespace}-pod.json`);
            const template = rendered.daemonSet.spec!.template;
            fs.writeFileSync(file, JSON.stringify({ apiVersion: "v1", kind: "Pod", metadata: { ...template.metadata, name: "pe14-pcp", namespace }, spec: { ...template.spec, nodeName: c.nodeName } }));
            return file;
        };
        // The DaemonSet's pod, in the project's namespace (enforce: privileged).
        const admitted = await c.exec(path.join(c.binDir, "kubectl"), ["--context", c.context, "create", "--dry-run=server", "-f", podFor("pe14-psa")]);
        assert.equal(admitted.code, 0, `admitted in the project's namespace: ${admitted.stderr}`);
        assert.doesNotMatch(admitted.stderr, /PodSecurity/, "no Pod Security warning in the project's namespace");

        // Namespaces that enforce "baseline" or "restricted" reject the same pod, and say why: the
        // host's namespaces, ports and read-only hostPath volumes it needs (the reason the project's
        // namespace opts into "privileged"), never privilege or capabilities (it asks for none).
        for (const level of ["baseline", "restricted"]) {
            const ns = `pe14-${level}`;
            await c.kubectl(["create", "namespace", ns]);
            await c.kubectl(["label", "namespace", ns, `pod-security.kubernetes.io/enforce=${level}`]);
            const rejected = await c.exec(path.join(c.binDir, "kubectl"), ["--context", c.context, "create", "--dry-run=server", "-f", podFor(ns)]);
            assert.notEqual(rejected.code, 0, `${level} rejects the DaemonSet's pod`);
            assert.match(rejected.stderr, new RegExp(`violates PodSecurity "${level}:latest"`), rejected.stderr);
            assert.match(rejected.stderr, /host namespaces \(hostNetwork=true, hostPID=true\)/, rejected.stderr);
            // baseline: "hostPath volumes (volumes ...)"; restricted: "restricted volume types (... "hostPath")".
            assert.match(rejected.stderr, /hostPath volumes \(volumes "host-proc"|restricted volume types \(volumes "host-proc".*"hostPath"\)/, rejected.stderr);
            assert.doesNotMatch(rejected.stderr, /privileged \(container|non-default capabilities|allowPrivilegeEscalation != false|runAsNonRoot != true|seccompProfile/, rejected.stderr);
            t.diagnostic(`${level}: ${rejected.stderr.slice(rejected.stderr.indexOf("violates")).trim()}`);
        }

        // A level that does not exist: the namespace itself is refused, naming the label.
        fs.writeFileSync(path.join(dir, "bogus.json"), JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: "pe14-bogus", labels: { "pod-security.kubernetes.io/enforce": "bogus" } } }));
        const bogus = await c.exec(path.join(c.binDir, "kubectl"), ["--context", c.context, "create", "-f", path.join(dir, "bogus.json")]);
        assert.notEqual(bogus.code, 0, "a namespace with enforce=bogus is refused");
        assert.match(bogus.stderr, /metadata\.labels\[pod-security\.kubernetes\.io\/enforce\]: Invalid value: "bogus"/, bogus.stderr);
    });

    it("oci.sh cluster-load --containerd imports an image into the k8s.io namespace under its reference, cluster-remove takes it away", async (t) => {
        const c = need(t);
        if (!c) return;
        const tarball = path.join(c.binDir, "..", "images", "pause.tar");
        const ref = "pe14-load/pause:test";
        const flags = ["--image", ref, "--context", c.context, "--containerd", c.containerdSocket];
        const load = await run("bash", [ociSh, "cluster-load", ...flags, "--tarball", tarball]);
        assert.equal(load.code, 0, load.stderr);
        assert.deepEqual(JSON.parse(load.stdout), { image: ref, context: c.context, loaded: true, via: "containerd", name: `docker.io/${ref}` });
        const names = (await c.ctr(["images", "list", "--quiet"])).split("\n");
        assert.ok(names.includes(`docker.io/${ref}`), names.join(" "));
        // Only REF is new: the archive's own tag (the cluster's pause image) is still the only other one.
        const again = await run("bash", [ociSh, "cluster-load", ...flags, "--tarball", tarball]);
        assert.equal(again.code, 0, again.stderr);
        const removed = await run("bash", [ociSh, "cluster-remove", ...flags]);
        assert.equal(removed.code, 0, removed.stderr);
        assert.equal((JSON.parse(removed.stdout) as { removed: boolean }).removed, true);
        assert.ok(!(await c.ctr(["images", "list", "--quiet"])).split("\n").includes(`docker.io/${ref}`));
        const twice = await run("bash", [ociSh, "cluster-remove", ...flags]);
        assert.equal((JSON.parse(twice.stdout) as { removed: boolean }).removed, false);
        const bad = await run("bash", [ociSh, "cluster-load", "--image", ref, "--context", c.context, "--containerd", path.join(c.dir, "nothing.sock")]);
        assert.notEqual(bad.code, 0);
        assert.match(bad.stderr, /--containerd .* is not a unix socket/);
    });

    it("stop() leaves nothing: no process in its namespace, no namespace, no mount, no dir, no log link", async (t) => {
        const c = need(t);
        if (!c) return;
        await c.stop();
        stopped = true;
        assert.equal(fs.existsSync(`/run/netns/${c.netns}`), false, "the namespace is gone");
        assert.equal(fs.existsSync(c.dir), false, "the dir is gone");
        const mounts = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => l.includes(c.dir));
        assert.deepEqual(mounts, []);
        const links = fs.existsSync("/var/log/containers") ? fs.readdirSync("/var/log/containers").filter((n) => n.includes("pe14-")) : [];
        assert.deepEqual(links, []);
        const left = (await run("ps", ["-eo", "pid,args"])).stdout.split("\n").filter((l) => l.includes(c.dir));
        assert.deepEqual(left, []);
    });
});
