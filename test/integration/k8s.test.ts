/**
 * The PCP DaemonSet on a real Kubernetes cluster.
 *
 * The cluster is, in this order:
 *   - the one of PCP_EVAL_KUBE_CONTEXT, when set (opt-in: an existing cluster
 *     with the image already loaded, PCP_EVAL_K8S_IMAGE), or
 *   - the one-node cluster of test/helpers/cluster.ts, built and started here,
 *     with the PCP fixture image (test/fixtures/pcp-image) imported into its
 *     containerd by `oci.sh cluster-load --containerd --tarball`. In CI this
 *     always runs: nothing is skipped.
 *
 *   PCP_EVAL_KUBE_CONTEXT   context to deploy to (an existing cluster)
 *   PCP_EVAL_K8S_IMAGE      image reference present in that cluster's runtime
 *                           (e.g. loaded by `host/oci.sh cluster-load`)
 *   PCP_EVAL_K8S_PULL_POLICY  imagePullPolicy (default IfNotPresent)
 *
 * It renders manifests/ into a namespace of its own (pe7-k8s-<random>),
 * applies all.yaml, waits for the rollout, then checks: one ready pod per
 * node; on each, pmcd answers and serves kernel.all.load (pminfo through
 * `kubectl port-forward`, so the test itself only talks to 127.0.0.1, in the
 * built cluster's namespace for that cluster) and pmproxy answers; the
 * provider plugin's DaemonSetEndpoints (provider/endpoints.go), started
 * where the clients run, reads every node's endpoints from the cluster; and after
 * `kubectl delete` the namespace and everything in it are gone.
 *
 * A second test needs no cluster and runs wherever PCP is installed: real
 * pmcd, started with the rendered pmcd container's arguments and environment,
 * reads kernel.all.load from below LINUX_STATSPATH, i.e. from the host mounts
 * the DaemonSet provides rather than from the container's own /proc.
 */
import { strict as assert } from "node:assert";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it, type TestContext } from "node:test";
import { promisify } from "node:util";
import { constants } from "../../components/constants";
import { dumpManifests, labelKeys, renderManifests, type PullPolicy } from "../../components/k8sManifests";
import type { DaemonSetEndpointsInputs, DaemonSetEndpointsState } from "../../components/pcpDaemonSet";
import { buildPcpImage } from "../fixtures/pcp-image/fixture";
import { clusterUnavailableReason, startCluster, type Cluster } from "../helpers/cluster";
import { repoRoot } from "../helpers/engine";
import { freePort } from "../helpers/ports";
import { startProviderPlugin, type ProviderPlugin } from "../helpers/providerPlugin";
import { run } from "../helpers/run";
import { haveCommand, isRoot, requireTools } from "../helpers/tools";

const execFileP = promisify(execFile);
const externalContext = process.env.PCP_EVAL_KUBE_CONTEXT ?? "";
const pullPolicy = (process.env.PCP_EVAL_K8S_PULL_POLICY || "IfNotPresent") as PullPolicy;
const waitSeconds = constants.timeoutsSeconds.services;

/** Where the test deploys: a context, the image in its runtime, and how its clients run. */
interface Target {
    context: string;
    /** The kubeconfig file to name (pcp-eval:kubeconfig); "" for kubectl's default. */
    kubeconfig: string;
    image: string;
    /** The built cluster's network namespace, where its clients (and the plugin) run; undefined: this one. */
    netns?: string;
    /** argv for a client command (in the built cluster's namespace, or as is). */
    argv(cmd: string, args: string[]): [string, string[]];
    env: NodeJS.ProcessEnv;
    stop(): Promise<void>;
}

async function client(target: Target, cmd: string, args: string[], timeoutSeconds = waitSeconds): Promise<string> {
    const [c, a] = target.argv(cmd, args);
    const r = await run(c, a, { env: target.env, timeoutMs: timeoutSeconds * 1000 });
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr.trim() || `status ${r.code}`}`);
    return r.stdout;
}

function kubectl(target: Target, args: string[], timeoutSeconds = waitSeconds): Promise<string> {
    return client(target, "kubectl", ["--context", target.context, ...args], timeoutSeconds);
}

/** An existing cluster (PCP_EVAL_KUBE_CONTEXT): why it cannot be used, or the target. */
async function externalTarget(): Promise<Target | string> {
    const image = process.env.PCP_EVAL_K8S_IMAGE ?? "";
    const target: Target = { context: externalContext, kubeconfig: "", image, argv: (c, a) => [c, a], env: process.env, stop: async () => {} };
    if (!haveCommand("kubectl")) return "kubectl is not installed, so no Kubernetes cluster can be reached";
    try {
        await kubectl(target, ["version", "--output=json", "--request-timeout=10s"], 20);
    } catch (err) {
        return `kube context "${externalContext}" (PCP_EVAL_KUBE_CONTEXT) did not answer: ${(err as Error).message.split("\n")[0]}`;
    }
    if (image === "") return `kube context "${externalContext}" answers, but PCP_EVAL_K8S_IMAGE is not set: load the PCP image into the cluster (host/oci.sh cluster-load) and set it to that reference`;
    return target;
}

/** The cluster built here, with the PCP fixture image imported into its containerd. */
async function builtTarget(): Promise<Target> {
    const fixture = buildPcpImage();
    const cluster: Cluster = await startCluster({ prefix: "pe14" });
    try {
        const image = fixture.repoTag;
        const load = await run("bash", [path.join(repoRoot, "host", "oci.sh"), "cluster-load", "--image", image, "--context", cluster.context, "--containerd", cluster.containerdSocket, "--tarball", fixture.tarball]);
        if (load.code !== 0) throw new Error(`oci.sh cluster-load failed: ${load.stderr}`);
        return { context: cluster.context, kubeconfig: cluster.kubeconfig, netns: cluster.netns, image, argv: cluster.argv, env: cluster.env, stop: () => cluster.stop() };
    } catch (err) {
        await cluster.stop();
        throw err;
    }
}

/**
 * The provider plugin (provider/), started where the target's clients run
 * and with their environment, as the engine would start it on a host that
 * reaches the cluster. In the built cluster's namespace the test reaches the
 * plugin's port (on that namespace's loopback) through a unix socket that a
 * socat inside the namespace forwards. Both end with the test, by their PIDs.
 */
async function pluginFor(t: TestContext, target: Target): Promise<ProviderPlugin> {
    if (target.netns === undefined) {
        const plugin = await startProviderPlugin({ env: target.env });
        t.after(() => plugin.close());
        return plugin;
    }
    const sockets = fs.mkdtempSync(path.join(os.tmpdir(), "pe7-plugin-"));
    const socket = path.join(sockets, "plugin.sock");
    let forwarder: ChildProcess | undefined;
    t.after(() => {
        if (forwarder?.pid !== undefined && forwarder.exitCode === null && forwarder.signalCode === null) process.kill(forwarder.pid, "SIGTERM");
        fs.rmSync(sockets, { recursive: true, force: true });
    });
    const plugin = await startProviderPlugin({
        env: target.env,
        // nsenter execs the plugin: the child's PID is the plugin's.
        launch: (file, args, opts) => {
            const [c, a] = target.argv(file, args);
            return spawn(c, a, { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"] });
        },
        target: async (port) => {
            const [c, a] = target.argv("socat", [`UNIX-LISTEN:${socket},fork`, `TCP:127.0.0.1:${port}`]);
            forwarder = spawn(c, a, { stdio: "ignore", env: target.env });
            for (let i = 0; i < 250 && !fs.existsSync(socket); i++) await new Promise((r) => setTimeout(r, 20));
            assert.ok(fs.existsSync(socket), "socat listens on the plugin's socket");
            return `unix:${socket}`;
        },
    });
    t.after(() => plugin.close());
    return plugin;
}

interface Forward {
    port: number;
    child: ChildProcess;
}

/** `kubectl port-forward` to a pod's port on a free 127.0.0.1 port; resolves once it listens. */
function portForward(target: Target, namespace: string, pod: string, remotePort: number): Promise<Forward> {
    return new Promise((resolve, reject) => {
        const [c, a] = target.argv("kubectl", ["--context", target.context, "--namespace", namespace, "port-forward", "--address", "127.0.0.1", `pod/${pod}`, `:${remotePort}`]);
        const child = spawn(c, a, { stdio: ["ignore", "pipe", "pipe"], env: target.env });
        let out = "";
        let err = "";
        const timer = setTimeout(() => {
            child.kill();
            reject(new Error(`port-forward to ${pod}:${remotePort} did not start: ${err.trim()}`));
        }, waitSeconds * 1000);
        child.stdout!.on("data", (chunk: Buffer) => {
            out += chunk.toString();
            const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(out);
            if (m) {
                clearTimeout(timer);
                resolve({ port: Number(m[1]), child });
            }
        });
        child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString()));
        child.on("exit", (code) => {
            clearTimeout(timer);
            reject(new Error(`port-forward to ${pod}:${remotePort} exited (${code}): ${err.trim()}`));
        });
    });
}

function stopForward(f: Forward): void {
    // Only the process this test started, by its handle.
    if (f.child.exitCode === null) f.child.kill("SIGTERM");
}

interface PodJson {
    metadata: { name: string };
    spec: { nodeName?: string; hostNetwork?: boolean };
    status: { phase?: string; hostIP?: string; podIP?: string; conditions?: Array<{ type: string; status: string }> };
}

describe("PCP DaemonSet on a real cluster", () => {
    it("deploys one ready pod per node, pmcd and pmproxy answer on each, delete leaves nothing", { timeout: waitSeconds * 15 * 1000 }, async (t: TestContext) => {
        let target: Target;
        if (externalContext !== "") {
            const ext = await externalTarget();
            if (typeof ext === "string") {
                t.skip(`skipped: ${ext}`);
                return;
            }
            target = ext;
        } else {
            const reason = clusterUnavailableReason();
            if (!requireTools(t, [[`no cluster can be built here: ${reason}`, () => reason === undefined], "pminfo", "curl", "socat"])) return;
            target = await builtTarget();
        }
        t.after(() => target.stop());

        const namespace = `pe7-k8s-${crypto.randomBytes(4).toString("hex")}`;
        const instance = `pe7-it-${crypto.randomBytes(2).toString("hex")}`;
        const rendered = renderManifests({ image: target.image, namespace, instance, managedBy: "kubectl", imagePullPolicy: pullPolicy, hostUdev: fs.existsSync("/run/udev") });
        const dsName = rendered.daemonSet.metadata!.name!;
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe7-k8s-"));
        const allYaml = path.join(dir, "all.yaml");
        fs.writeFileSync(allYaml, dumpManifests(rendered)["all.yaml"]);
        const forwards: Forward[] = [];
        let deleted = false;
        t.after(async () => {
            for (const f of forwards) stopForward(f);
            if (!deleted) await kubectl(target, ["delete", "--filename", allYaml, "--ignore-not-found", "--wait=true", `--timeout=${waitSeconds * 3}s`], waitSeconds * 4).catch(() => undefined);
            fs.rmSync(dir, { recursive: true, force: true });
        });

        await kubectl(target, ["apply", "--filename", allYaml]);
        await kubectl(target, ["--namespace", namespace, "rollout", "status", `daemonset/${dsName}`, `--timeout=${waitSeconds * 3}s`], waitSeconds * 4);

        // One ready pod on every node, control plane included.
        const nodes = (JSON.parse(await kubectl(target, ["get", "nodes", "--output=json"])) as { items: Array<{ metadata: { name: string } }> }).items.map((n) => n.metadata.name);
        const selector = `${labelKeys.name}=pcp,${labelKeys.instance}=${instance}`;
        const podList = JSON.parse(await kubectl(target, ["--namespace", namespace, "get", "pods", "--selector", selector, "--output=json"])) as { items: PodJson[] };
        const pods = podList.items;
        assert.deepEqual(pods.map((p) => p.spec.nodeName).sort(), [...nodes].sort(), "exactly one pod per node");
        for (const p of pods) {
            assert.equal(p.status.phase, "Running", `${p.metadata.name} on ${p.spec.nodeName}`);
            assert.ok(p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True"), `${p.metadata.name} is ready`);
            assert.equal(p.spec.hostNetwork, true);
            assert.equal(p.status.podIP, p.status.hostIP, "hostNetwork: the pod answers on its node's address");
        }

        // The endpoints PcpDaemonSet outputs, read from this cluster by the provider plugin's
        // DaemonSetEndpoints with the inputs the component gives it: every node, on its own address.
        const plugin = await pluginFor(t, target);
        const reader = plugin.resource<DaemonSetEndpointsState>("DaemonSetEndpoints");
        const revision = await kubectl(target, ["--namespace", namespace, "get", `daemonset/${dsName}`, "--output=jsonpath={.metadata.uid}/{.metadata.generation}"]);
        const inputs: DaemonSetEndpointsInputs = {
            context: target.context, kubeconfig: target.kubeconfig, namespace, selector,
            pmcdPort: constants.ports.pmcd, pmproxyPort: constants.ports.pmproxy, revision, timeoutSeconds: waitSeconds,
        };
        assert.deepEqual((await reader.check({}, inputs)).failures, []);
        const endpoints = (await reader.create(inputs)).outs;
        assert.deepEqual(Object.keys(endpoints.pmcdEndpoints).sort(), [...nodes].sort());
        for (const p of pods) {
            const host = p.status.hostIP!.includes(":") ? `[${p.status.hostIP}]` : p.status.hostIP!;
            assert.equal(endpoints.pmcdEndpoints[p.spec.nodeName!], `${host}:${constants.ports.pmcd}`, `pmcd of ${p.spec.nodeName}`);
            assert.equal(endpoints.pmproxyUrls[p.spec.nodeName!], `http://${host}:${constants.ports.pmproxy}`, `pmproxy of ${p.spec.nodeName}`);
        }
        // refresh reads the same; the same inputs plan no change.
        assert.deepEqual((await reader.read(`${target.context}/${namespace}/${selector}`, endpoints)).props?.pmcdEndpoints, endpoints.pmcdEndpoints);
        assert.equal((await reader.diff(`${target.context}/${namespace}/${selector}`, endpoints, inputs)).changes, false);

        for (const p of pods) {
            const pmcd = await portForward(target, namespace, p.metadata.name, constants.ports.pmcd);
            forwards.push(pmcd);
            const stdout = await client(target, "pminfo", ["-h", `127.0.0.1:${pmcd.port}`, "-f", "kernel.all.load"], constants.timeoutsSeconds.metrics);
            const values = [...stdout.matchAll(/inst \[\d+ or "[^"]+"\] value ([0-9.]+)/g)].map((m) => Number(m[1]));
            assert.equal(values.length, 3, `kernel.all.load from ${p.spec.nodeName}: ${stdout}`);
            for (const v of values) assert.ok(Number.isFinite(v) && v >= 0, `load average ${v} on ${p.spec.nodeName}`);

            const pmproxy = await portForward(target, namespace, p.metadata.name, constants.ports.pmproxy);
            forwards.push(pmproxy);
            const body = JSON.parse(await client(target, "curl", ["-sf", "--max-time", String(constants.timeoutsSeconds.metrics), `http://127.0.0.1:${pmproxy.port}/pmapi/fetch?names=kernel.all.load`])) as { values?: Array<{ name: string }> };
            assert.equal(body.values?.[0]?.name, "kernel.all.load", `pmproxy on ${p.spec.nodeName}`);
            stopForward(pmcd);
            stopForward(pmproxy);
        }

        // Destroy: the namespace and everything in it are gone.
        await kubectl(target, ["delete", "--filename", allYaml, "--wait=true", `--timeout=${waitSeconds * 3}s`], waitSeconds * 4);
        deleted = true;
        await assert.rejects(kubectl(target, ["get", "namespace", namespace]), /NotFound|not found/);
        const left = JSON.parse(await kubectl(target, ["get", "pods,daemonsets", "--all-namespaces", "--selector", `${labelKeys.instance}=${instance}`, "--output=json"])) as { items: unknown[] };
        assert.deepEqual(left.items, []);
    });
});

/** Values of PCP's configuration file (/etc/pcp.conf or $PCP_CONF). */
function pcpConf(): Record<string, string> {
    const file = process.env.PCP_CONF ?? "/etc/pcp.conf";
    if (!fs.existsSync(file)) return {};
    const out: Record<string, string> = {};
    for (const line of fs.readFileSync(file, "utf8").split("\n")) {
        const m = /^(PCP_[A-Z_]+)=(.*)$/.exec(line.trim());
        if (m) out[m[1]] = m[2].replace(/^"|"$/g, "");
    }
    return out;
}


async function pminfoLoad(port: number): Promise<number[]> {
    const { stdout } = await execFileP("pminfo", ["-h", `127.0.0.1:${port}`, "-f", "kernel.all.load"], {
        encoding: "utf8",
        timeout: constants.timeoutsSeconds.metrics * 1000,
    });
    return [...stdout.matchAll(/inst \[\d+ or "[^"]+"\] value ([0-9.]+)/g)].map((m) => Number(m[1]));
}

describe("the DaemonSet's pmcd environment with real PCP (no cluster)", () => {
    it("pmcd with the rendered arguments and LINUX_STATSPATH reads kernel.all.load from the host mount prefix", async (t: TestContext) => {
        const conf = pcpConf();
        const pmcdBin = path.join(conf.PCP_BINADM_DIR ?? "/usr/lib/pcp/bin", "pmcd");
        const linuxPmda = path.join(conf.PCP_PMDAS_DIR ?? "/var/lib/pcp/pmdas", "linux", "pmda_linux.so");
        const pmns = path.join(conf.PCP_VAR_DIR ?? "/var/lib/pcp", "pmns", "root_linux");
        const user = conf.PCP_USER ?? "pcp";
        if (
            !requireTools(t, [
                "pminfo",
                [`pmcd is not installed at ${pmcdBin} (Debian package pcp)`, () => fs.existsSync(pmcdBin)],
                [`the linux PMDA is not installed at ${linuxPmda}`, () => fs.existsSync(linuxPmda)],
                [`no PMNS file ${pmns}`, () => fs.existsSync(pmns)],
                ["not root: pmcd starts as root and switches to the pcp user", isRoot],
            ])
        ) {
            return;
        }

        const pmcd = renderManifests({ image: "pcp-eval:test", instance: "pe7-env" }).daemonSet.spec!.template.spec!.containers.find((c) => c.name === "pmcd")!;
        const env = Object.fromEntries((pmcd.env ?? []).map((e) => [e.name, e.value ?? ""]));
        const prefix = env.LINUX_STATSPATH;
        assert.ok(prefix, "the pmcd container sets LINUX_STATSPATH");
        assert.ok((pmcd.volumeMounts ?? []).some((m) => m.mountPath === `${prefix}/proc` && m.readOnly === true), "the host's /proc is mounted read-only below the prefix");

        // A stand-in for the node's /proc under the prefix, with a load average
        // no real host has right now: reading it proves pmcd used the prefix.
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe7-pmcd-"));
        let child: ChildProcess | undefined;
        t.after(async () => {
            if (child?.pid !== undefined && child.exitCode === null) {
                child.kill("SIGTERM");
                await new Promise((r) => child!.once("exit", r));
            }
            fs.rmSync(dir, { recursive: true, force: true });
        });
        const host = path.join(dir, prefix);
        fs.mkdirSync(path.join(host, "proc"), { recursive: true });
        const want = [1 + crypto.randomInt(90) / 10, 1 + crypto.randomInt(90) / 10, 1 + crypto.randomInt(90) / 10];
        fs.writeFileSync(path.join(host, "proc", "loadavg"), `${want.map((v) => v.toFixed(2)).join(" ")} 1/100 4242\n`);
        for (const sub of ["run", "log"]) fs.mkdirSync(path.join(dir, sub));
        fs.writeFileSync(path.join(dir, "pmcd.conf"), `linux\t60\tdso\tlinux_init\t${linuxPmda}\n`);
        fs.chmodSync(dir, 0o755);
        await execFileP("chown", ["-R", user, path.join(dir, "run"), path.join(dir, "log")]);

        // The container's own arguments, with a free loopback port instead of
        // the node port, plus this test's config, PMNS, log and socket.
        const port = await freePort();
        const args = [...(pmcd.args ?? [])];
        const p = args.indexOf("-p");
        assert.equal(args[p + 1], String(constants.ports.pmcd));
        args[p + 1] = String(port);
        args.push("-i", "127.0.0.1", "-c", path.join(dir, "pmcd.conf"), "-n", pmns, "-l", path.join(dir, "log", "pmcd.log"), "-s", path.join(dir, "run", "pmcd.socket"));
        const childEnv: NodeJS.ProcessEnv = { ...process.env, PCP_RUN_DIR: path.join(dir, "run"), PCP_LOG_DIR: path.join(dir, "log") };
        for (const [k, v] of Object.entries(env)) childEnv[k] = v.startsWith("/") ? path.join(dir, v) : v;
        child = spawn(pmcdBin, args, { env: childEnv, stdio: "ignore" });

        let got: number[] = [];
        const deadline = Date.now() + constants.timeoutsSeconds.processStart * 1000 * 2;
        for (;;) {
            try {
                got = await pminfoLoad(port);
                break;
            } catch (err) {
                if (Date.now() > deadline || child.exitCode !== null) {
                    const log = fs.existsSync(path.join(dir, "log", "pmcd.log")) ? fs.readFileSync(path.join(dir, "log", "pmcd.log"), "utf8") : "(no log)";
                    throw new Error(`pmcd did not answer on 127.0.0.1:${port}: ${(err as Error).message}\n${log}`);
                }
                await new Promise((r) => setTimeout(r, 200));
            }
        }
        assert.equal(got.length, 3);
        got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 0.01, `kernel.all.load[${i}] = ${v}, the prefix holds ${want[i]}`));
    });
});
