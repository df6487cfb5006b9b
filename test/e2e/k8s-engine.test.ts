/**
 * End to end under the real Pulumi engine on the `k8s` stack (Pulumi.k8s.yaml):
 * the PCP DaemonSet deployed by the real kubernetes provider plugin (built
 * from Go modules by tools/build-kubernetes.sh) to the one-node cluster of
 * test/helpers/cluster.ts, started inside the engine harness's network
 * namespace so `pulumi` there reaches its apiserver. The image is the PCP
 * fixture image (test/fixtures/pcp-image), which the ci flake's pcp-container
 * copies into the Nix store; `oci.sh cluster-load --containerd --tarball`
 * imports it into the cluster's containerd (no Docker on this stack).
 *
 * In order: preview; up (namespace, DaemonSet rollout awaited by the
 * provider, pods ready); the outputs' endpoints answer with the host's load
 * and memory; `npm run verify` passes the daemonset target; a no-op up changes nothing; a pod deleted by
 * hand comes back and refresh shows no drift; destroy leaves nothing (the
 * namespace and the image in containerd are gone).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { constants } from "../../components/constants";
import { buildPcpImage } from "../fixtures/pcp-image/fixture";
import { clusterUnavailableReason, kubernetesTools, startCluster, type Cluster } from "../helpers/cluster";
import { EngineProject, engineTools, repoRoot, type EngineJson } from "../helpers/engine";
import { requireTools } from "../helpers/tools";

const stack = "k8s";
const reason = clusterUnavailableReason();
const needs: Array<string | [string, () => boolean]> = [
    [`no cluster can be built here: ${reason}`, () => reason === undefined],
    "nix",
    "pminfo",
    "curl",
    "jq",
];

/** Steps that change something, as "op type" (the URN's type part). */
function changes(json: EngineJson): string[] {
    return json.steps
        .filter((s) => s.op !== "same" && s.op !== "refresh")
        .map((s) => `${s.op} ${s.urn.split("::")[2]?.split("$").pop() ?? s.urn}`)
        .sort();
}

describe("the real Pulumi engine and kubernetes provider on the k8s stack", { concurrency: false, timeout: 40 * 60_000 }, () => {
    let p: EngineProject | undefined;
    let cluster: Cluster | undefined;
    let imageName = "";
    const ctx = (): { q: EngineProject; c: Cluster } => {
        assert.ok(p && cluster, "the engine project and cluster were not set up");
        return { q: p, c: cluster };
    };
    const kubectl = async (args: string[], timeoutMs?: number): Promise<string> => ctx().c.kubectl(args, timeoutMs);
    const namespace = constants.kubernetes.namespace;
    /** Runs a step that waits for pods; its failure carries what the cluster shows of them (events, kubelet, containerd). */
    const diagnosed = async <T>(step: () => Promise<T>): Promise<T> => {
        try {
            return await step();
        } catch (err) {
            const diagnosis = cluster ? await cluster.diagnose(namespace) : "(no cluster)";
            throw new Error(`${(err as Error).message}\n${diagnosis}`, { cause: err });
        }
    };

    before(async () => {
        if (needs.some((n) => (typeof n === "string" ? false : !n[1]()))) return;
        const tools = engineTools();
        const provider = kubernetesTools("provider");
        const clusterTools = kubernetesTools("cluster");
        const image = buildPcpImage();
        p = await EngineProject.create(tools, "pe14", { stack, extraPath: [provider.binDir, clusterTools.binDir], pcpImage: { tarball: image.tarball, hash: image.hash } });
        cluster = await startCluster({ prefix: "pe14", netns: p.ns.name });
    });
    after(async () => {
        // The cluster first: the harness's dispose ends whatever is left in the namespace.
        await cluster?.stop();
        await p?.dispose();
    });

    it("preview plans the image, its import into containerd, the namespace, the DaemonSet and its endpoints", async (t) => {
        if (!requireTools(t, needs)) return;
        const { q, c } = ctx();
        await q.pulumiOk(["stack", "init", stack]);
        // The DaemonSet mounts the node's /run/udev (a must-exist hostPath): off where this host has none.
        const udev = String(fs.existsSync("/run/udev"));
        for (const [k, v] of [["kubeContext", c.context], ["kubeconfig", c.kubeconfig], ["kubeContainerd", c.containerdSocket], ["kubeHostUdev", udev]] as const) {
            await q.pulumiOk(["config", "set", `pcp-eval:${k}`, v, "--stack", stack]);
        }
        const { json } = await q.pulumiJson(["preview", "--stack", stack]);
        const types = changes(json);
        for (const want of ["create kubernetes:core/v1:Namespace", "create kubernetes:apps/v1:DaemonSet", "create pcp-eval:index:PcpDaemonSet", "create pcp-eval:index:OciImage"]) {
            assert.ok(types.includes(want), `${want} in ${types.join(", ")}`);
        }
        // No Docker on this stack: the image is only named, then imported by containerd.
        assert.ok(!json.steps.some((s) => s.urn.endsWith("pcp-image-load")), "no docker load");
    });

    it("up creates the namespace and the DaemonSet, the provider awaits the rollout, the pod is ready", async (t) => {
        if (!requireTools(t, needs)) return;
        const { q, c } = ctx();
        const hostKubeconfigCopies = (): string[] => fs.readdirSync(os.tmpdir()).filter((n) => /^kubeconfig\d+$/.test(n));
        const copiesBefore = hostKubeconfigCopies();
        await diagnosed(async () => {
            await q.pulumiJson(["up", "--yes", "--stack", stack]);
            const ds = JSON.parse(await kubectl(["--namespace", namespace, "get", "daemonset", "--output=json"])) as {
                items: Array<{ status: { desiredNumberScheduled: number; numberReady: number; updatedNumberScheduled: number } }>;
            };
            assert.equal(ds.items.length, 1);
            assert.deepEqual(ds.items[0]!.status.numberReady, 1, "the rollout was awaited: the one pod is ready when up returns");
            assert.equal(ds.items[0]!.status.desiredNumberScheduled, 1);
        });
        const outputs = await q.outputs();
        const k8s = outputs.kubernetes as { namespace: string; pmcdEndpoints: Record<string, string>; pmproxyUrls: Record<string, string> };
        assert.deepEqual(k8s.pmcdEndpoints, { [c.nodeName]: `${c.nodeIp}:${constants.ports.pmcd}` });
        assert.deepEqual(k8s.pmproxyUrls, { [c.nodeName]: `http://${c.nodeIp}:${constants.ports.pmproxy}` });
        imageName = (await c.ctr(["images", "list", "--quiet"])).split("\n").find((n) => n.startsWith(`docker.io/library/${constants.container.imageName}:`)) ?? "";
        assert.notEqual(imageName, "", "the stack's image is in the cluster's containerd");
        // The provider's copies of pcp-eval:kubeconfig (README, Security) land in the engine's TMPDIR, which dispose removes.
        assert.ok(fs.readdirSync(q.env.TMPDIR!).some((n) => /^kubeconfig\d+$/.test(n)), `the provider's kubeconfig copy in ${q.env.TMPDIR}`);
        assert.deepEqual(hostKubeconfigCopies().filter((n) => !copiesBefore.includes(n)), [], `no kubeconfig copy left in ${os.tmpdir()}`);
    });

    it("the output endpoints answer: pmcd serves kernel.all.load, pmproxy serves mem.physmem", async (t) => {
        if (!requireTools(t, needs)) return;
        const { q, c } = ctx();
        // The pod reads the host's /proc: its 1-minute load lies between two reads of /proc/loadavg around it.
        // The kernel updates it every 5 s, so a pminfo slower than that may see two updates that leave the
        // bracket; a wrong source misses it on every try, so three tries tell the two apart.
        const loadavg = (): number => Number(fs.readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
        const tries: string[] = [];
        for (let i = 0; i < 3; i++) {
            const before = loadavg();
            const load = q.ns.runOk("pminfo", ["-h", `${c.nodeIp}:${constants.ports.pmcd}`, "-f", "kernel.all.load"]);
            const after = loadavg();
            assert.equal([...load.matchAll(/value ([0-9.]+)/g)].length, 3, load);
            const load1 = Number(/inst \[1 or "1 minute"\] value ([0-9.]+)/.exec(load)?.[1]);
            if (load1 >= Math.min(before, after) - 0.01 && load1 <= Math.max(before, after) + 0.01) break;
            tries.push(`${load1} vs ${before}..${after}`);
        }
        assert.ok(tries.length < 3, `kernel.all.load 1-minute against the host's /proc/loadavg, three tries: ${tries.join("; ")}`);
        // And its memory: mem.physmem (KB) is the host's MemTotal.
        const body = q.ns.runOk("curl", ["-sf", "--max-time", "10", `http://${c.nodeIp}:${constants.ports.pmproxy}/pmapi/fetch?names=mem.physmem`]);
        const physmem = (JSON.parse(body) as { values: Array<{ name: string; instances: Array<{ value: number }> }> }).values[0]!;
        assert.equal(physmem.name, "mem.physmem");
        const memTotalKb = Number(/^MemTotal:\s+(\d+) kB$/m.exec(fs.readFileSync("/proc/meminfo", "utf8"))?.[1]);
        assert.equal(physmem.instances[0]!.value, memTotalKb, "mem.physmem is the host's MemTotal");
    });

    it("npm run verify -- --stack k8s passes the daemonset target", async (t) => {
        if (!requireTools(t, needs)) return;
        const { q, c } = ctx();
        const reportFile = path.join(q.projectDir, "verify-k8s.json");
        const r = q.ns.run("npm", ["run", "--silent", "verify", "--", "--stack", stack, "--project", q.projectDir, "--json", reportFile], {
            env: { ...q.env, PWD: repoRoot },
            timeoutMs: 10 * 60_000,
        });
        const out = `${r.stdout}\n${r.stderr}`;
        assert.equal(r.status, 0, out.slice(-4000));
        const report = JSON.parse(fs.readFileSync(reportFile, "utf8")) as { ok: boolean; targets: Array<{ target: string; kind?: string; checks: Array<{ name: string; status: string; message: string }> }> };
        assert.ok(report.ok, out.slice(-4000));
        assert.deepEqual(report.targets.map((t) => `${t.kind} ${t.target}`), [`daemonset daemonset-${c.nodeName}`]);
        const status = new Map(report.targets[0]!.checks.map((k) => [k.name, k.status]));
        assert.equal(status.get(`pmcd tcp ${c.nodeIp}:${constants.ports.pmcd}`), "PASS", out.slice(-4000));
        for (const name of ["pmproxy http /pmapi/context", ...constants.metrics.required]) assert.equal(status.get(name), "PASS", `${name}: ${out.slice(-4000)}`);
        assert.ok(![...status.values()].includes("FAIL"), out.slice(-4000));
    });

    it("a second up changes nothing", async (t) => {
        if (!requireTools(t, needs)) return;
        const { q } = ctx();
        const { json } = await q.pulumiJson(["up", "--yes", "--expect-no-changes", "--stack", stack]);
        assert.deepEqual(changes(json), []);
    });

    it("a pod deleted by hand comes back, and refresh then shows no drift", async (t) => {
        if (!requireTools(t, needs)) return;
        const { q } = ctx();
        const before = (await kubectl(["--namespace", namespace, "get", "pods", "--output=name"])).trim();
        await diagnosed(async () => {
            await kubectl(["--namespace", namespace, "delete", "pod", "--all", "--wait=true", "--timeout=120s"], 150_000);
            const dsName = (await kubectl(["--namespace", namespace, "get", "daemonset", "--output=name"])).trim();
            await kubectl(["--namespace", namespace, "rollout", "status", dsName, "--timeout=180s"], 210_000);
            await kubectl(["--namespace", namespace, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=180s"], 210_000);
        });
        const after = (await kubectl(["--namespace", namespace, "get", "pods", "--output=name"])).trim();
        assert.notEqual(after, before, "a new pod replaced the deleted one");
        const { json } = await q.pulumiJson(["refresh", "--preview-only", "--stack", stack]);
        assert.deepEqual(changes(json), [], "no drift");
    });

    it("destroy removes the namespace and the image from containerd; nothing of the stack is left", async (t) => {
        if (!requireTools(t, needs)) return;
        const { q, c } = ctx();
        await q.pulumiOk(["destroy", "--yes", "--stack", stack]);
        await assert.rejects(kubectl(["get", "namespace", namespace]), /NotFound|not found/);
        assert.notEqual(imageName, "", "up found the stack's image in containerd");
        const images = (await c.ctr(["images", "list", "--quiet"])).split("\n");
        assert.ok(!images.includes(imageName), `${imageName} is gone from containerd`);
        assert.deepEqual(q.outLinks(), []);
        const state = await q.exportState();
        assert.deepEqual((state.deployment?.resources ?? []).filter((r) => r.type !== "pulumi:pulumi:Stack"), []);
        await q.pulumiOk(["stack", "rm", "--yes", stack]);
    });
});

