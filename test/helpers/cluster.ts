/**
 * A one-node Kubernetes cluster for tests, built and run on this machine.
 *
 * - Binaries: kube-apiserver, kube-controller-manager, kube-scheduler,
 *   kubelet, kubectl and the pause image come from
 *   tools/build-kubernetes.sh (Go modules, cached); etcd, containerd, runc and
 *   the CNI plugins from Debian (scripts/install-test-deps.sh).
 * - Network: everything runs in a network namespace of its own, where the node
 *   has an address that is not loopback (kubelet refuses a loopback node IP)
 *   on a veth link of its own (both ends in the namespace); the namespace is entered with `nsenter --net` only, so
 *   kubelet, containerd and the containers share the machine's mount
 *   namespace (volumes kubelet mounts are seen by the runtime). Clients run
 *   in the namespace too: `exec`, `kubectl`, `ctr` below. Pods with
 *   hostNetwork live in that namespace. The CNI network is loopback only
 *   (without any conflist the node stays NotReady), so only hostNetwork pods
 *   start: containerd 1.6 fails any other sandbox with "failed to find
 *   network info for sandbox" (no eth0 in the CNI result).
 * - Certificates: a CA and one client certificate per component, made with
 *   openssl; the admin kubeconfig has a context of its own (`context`).
 * - containerd (Debian's 1.6) has its socket, root, state and config in the
 *   cluster's dir. This machine denies lowering oom_score_adj even to root, and
 *   kubelet asks -998 for every pod sandbox: runc then fails with "can't get
 *   final child's PID from pipe: EOF". restrict_oom_score_adj = true makes
 *   containerd clamp it instead.
 * - stop() ends what it started, by PID, newest first (after removing every
 *   pod's containers through containerd), unmounts what is left under the
 *   dir, removes cgroups of its containers and kubelet's log links, the
 *   namespace and the dir.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { mountsBelow, processAlive, tail } from "./dockerd";
import { repoRoot } from "./engine";
import { run, type RunResult } from "./run";
import { firstUnmet, isRoot } from "./tools";

/** What tools/build-kubernetes.sh prints for one part. */
export interface KubernetesBuild {
    binDir: string;
    key: string;
    version: string;
    built: boolean;
    seconds: number;
}

/** tools/build-kubernetes.sh PART: the cached build, or a build now (only the cached one when scripts/test.sh built it: PCP_EVAL_KUBERNETES_BUILT=true). */
export function kubernetesTools(part: "provider" | "cluster"): KubernetesBuild {
    const printOnly = process.env.PCP_EVAL_KUBERNETES_BUILT === "true";
    const r = spawnSync("bash", [path.join(repoRoot, "tools", "build-kubernetes.sh"), part, ...(printOnly ? ["--print"] : [])], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "inherit"],
    });
    if (r.status !== 0) throw new Error(`tools/build-kubernetes.sh ${part} failed (status ${r.status})`);
    const out = JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as Record<string, KubernetesBuild>;
    const build = out[part];
    if (!build) throw new Error(`tools/build-kubernetes.sh ${part} printed no ${part} entry`);
    return build;
}

/** Host tools the cluster needs besides the built ones (Debian packages of install-test-deps.sh). */
export const clusterHostTools = ["etcd", "containerd", "containerd-shim-runc-v2", "runc", "ctr", "openssl", "nsenter", "ip", "go"];
const cniDir = "/usr/lib/cni";

/** Why a cluster cannot be started here, or undefined. */
export function clusterUnavailableReason(): string | undefined {
    return firstUnmet([
        ...clusterHostTools,
        ["not root: kubelet, containerd and network namespaces need root", isRoot],
        [`no CNI plugins in ${cniDir} (Debian package containernetworking-plugins)`, () => fs.existsSync(path.join(cniDir, "loopback"))],
    ]);
}

export interface Cluster {
    /** The cluster's own kubeconfig file, with one context. */
    kubeconfig: string;
    context: string;
    /** The network namespace everything runs in; clients must run there too. */
    netns: string;
    nodeName: string;
    nodeIp: string;
    /** containerd's socket (CRI and `ctr -n k8s.io`). */
    containerdSocket: string;
    /** Where the built binaries are (kubectl among them). */
    binDir: string;
    dir: string;
    /** The argv that runs CMD inside the cluster's namespace (nsenter --net). */
    argv(cmd: string, args: string[]): [string, string[]];
    /** Runs a command in the cluster's namespace, KUBECONFIG set and the built binaries first on PATH. */
    exec(cmd: string, args: string[], timeoutMs?: number): Promise<RunResult>;
    /** kubectl (the built one) with the cluster's kubeconfig; throws with stderr on failure. */
    kubectl(args: string[], timeoutMs?: number): Promise<string>;
    /** ctr on the cluster's containerd, namespace k8s.io; throws on failure. */
    ctr(args: string[]): Promise<string>;
    /** Environment for clients started through argv() (KUBECONFIG, PATH). */
    env: NodeJS.ProcessEnv;
    /** The last lines of a component's log (etcd, containerd, kube-apiserver, ..., kubelet), for failure messages. */
    logTail(component: string, lines?: number): string;
    /**
     * What a failure message needs when pods in NAMESPACE do not come up: the pods with their
     * phase and container states, the namespace's events, the images in containerd, and the
     * last lines of kubelet's and containerd's logs. Never throws: a part it cannot read says why.
     */
    diagnose(namespace: string): Promise<string>;
    stop(): Promise<void>;
}

function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

function must(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
    const r = spawnSync(cmd, args, { encoding: "utf8", cwd: opts.cwd });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status ?? r.signal}): ${r.stderr}${r.error ? String(r.error) : ""}`);
    return r.stdout;
}

// ---------------------------------------------------------------------------
// Certificates and kubeconfigs.

interface Pki {
    ca: string;
    caKey: string;
}

/** A CA (EC P-256: quick to make, accepted by every component). */
function makeCa(dir: string): Pki {
    const ca = path.join(dir, "ca.crt");
    const caKey = path.join(dir, "ca.key");
    must("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", caKey]);
    must("openssl", ["req", "-x509", "-new", "-key", caKey, "-sha256", "-days", "2", "-subj", "/CN=pcp-eval-test-ca", "-out", ca]);
    return { ca, caKey };
}

/** A certificate signed by the CA: client auth, or server auth with SANs. */
function makeCert(pki: Pki, dir: string, name: string, subject: string, sans?: string[]): { cert: string; key: string } {
    const key = path.join(dir, `${name}.key`);
    const csr = path.join(dir, `${name}.csr`);
    const cert = path.join(dir, `${name}.crt`);
    const ext = path.join(dir, `${name}.ext`);
    must("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key]);
    must("openssl", ["req", "-new", "-key", key, "-subj", subject, "-out", csr]);
    const lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"];
    lines.push(sans ? "extendedKeyUsage=serverAuth,clientAuth" : "extendedKeyUsage=clientAuth");
    if (sans) lines.push(`subjectAltName=${sans.join(",")}`);
    fs.writeFileSync(ext, `${lines.join("\n")}\n`);
    must("openssl", ["x509", "-req", "-in", csr, "-CA", pki.ca, "-CAkey", pki.caKey, "-CAcreateserial", "-days", "2", "-sha256", "-extfile", ext, "-out", cert]);
    fs.rmSync(csr);
    fs.rmSync(ext);
    return { cert, key };
}

function kubeconfigYaml(server: string, ca: string, context: string, user: { cert: string; key: string }): string {
    // JSON is YAML: no YAML writer needed.
    return JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: context, cluster: { server, "certificate-authority": ca } }],
        users: [{ name: context, user: { "client-certificate": user.cert, "client-key": user.key } }],
        contexts: [{ name: context, context: { cluster: context, user: context } }],
        "current-context": context,
    });
}

// ---------------------------------------------------------------------------

export interface ClusterOptions {
    /** Prefix of the namespace and temp dir names (the issue's, e.g. "pe14"). */
    prefix?: string;
    /** How long to wait for the node to be Ready. */
    readySeconds?: number;
    /**
     * Run in this existing network namespace (e.g. the engine harness's, so
     * `pulumi` there reaches the apiserver) instead of one of its own; stop()
     * then removes only the node's link from it.
     */
    netns?: string;
}

/** Starts a one-node cluster; stop() it in teardown (it also stops itself when the process exits). */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
    const reason = clusterUnavailableReason();
    if (reason) throw new Error(`cluster harness: ${reason}`);
    const prefix = options.prefix ?? "pe14";
    const tools = kubernetesTools("cluster");
    const bin = (name: string): string => path.join(tools.binDir, name);
    const pauseRef = fs.readFileSync(path.join(tools.binDir, "..", "images", "pause.ref"), "utf8").trim();

    const id = crypto.randomBytes(3).toString("hex");
    // Short: containerd's and kubelet's unix sockets live below it (108-byte limit).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}k-`));
    const netns = options.netns ?? `${prefix}-k8s-${id}`;
    const ownNetns = options.netns === undefined;
    const nodeName = `pcp-eval-node-${id}`;
    const nodeIp = "172.30.14.2";
    const context = `pcp-eval-test-${id}`;
    const containerdSocket = path.join(dir, "c.sock");
    const started: Array<{ name: string; child: ChildProcess; log: string }> = [];
    const seenContainers = new Set<string>();
    let netnsCreated = false;
    let linkCreated = false;

    const nsenter = (cmd: string, args: string[]): [string, string[]] => ["nsenter", [`--net=/run/netns/${netns}`, "--", cmd, ...args]];
    const env: NodeJS.ProcessEnv = { ...process.env, KUBECONFIG: path.join(dir, "admin.kubeconfig"), PATH: `${tools.binDir}:${process.env.PATH ?? "/usr/bin:/bin"}` };
    const exec = (cmd: string, args: string[], timeoutMs = 120_000): Promise<RunResult> => {
        const [c, a] = nsenter(cmd, args);
        return run(c, a, { env, timeoutMs });
    };
    const kubectl = async (args: string[], timeoutMs = 120_000): Promise<string> => {
        const r = await exec(bin("kubectl"), ["--context", context, ...args], timeoutMs);
        if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr.trim() || `status ${r.code}`}`);
        return r.stdout;
    };
    const ctr = async (args: string[]): Promise<string> => {
        const r = await run("ctr", ["--address", containerdSocket, "--namespace", "k8s.io", ...args], { timeoutMs: 120_000 });
        if (r.code !== 0) throw new Error(`ctr ${args.join(" ")}: ${r.stderr.trim() || `status ${r.code}`}`);
        return r.stdout;
    };

    const startDaemon = (name: string, cmd: string, args: string[]): ChildProcess => {
        const log = path.join(dir, `${name}.log`);
        const fd = fs.openSync(log, "a");
        const [c, a] = nsenter(cmd, args);
        // nsenter execs the daemon: the child's PID is the daemon's.
        const child = spawn(c, a, { detached: true, stdio: ["ignore", fd, fd], env });
        fs.closeSync(fd);
        child.unref();
        started.push({ name, child, log });
        return child;
    };

    const waitFor = async (what: string, seconds: number, check: () => Promise<boolean>): Promise<void> => {
        const deadline = Date.now() + seconds * 1000;
        for (;;) {
            for (const s of started) {
                if (s.child.exitCode !== null || s.child.signalCode !== null) {
                    throw new Error(`${s.name} exited (${s.child.exitCode ?? s.child.signalCode}) while waiting for ${what}; its log:\n${tail(s.log)}`);
                }
            }
            if (await check().catch(() => false)) return;
            if (Date.now() > deadline) {
                const logs = started.map((s) => `--- ${s.name}\n${tail(s.log, 8)}`).join("\n");
                throw new Error(`cluster harness: ${what} not within ${seconds}s\n${logs}`);
            }
            await sleep(500);
        }
    };

    const rememberContainers = async (): Promise<void> => {
        const r = await run("ctr", ["--address", containerdSocket, "--namespace", "k8s.io", "containers", "list", "--quiet"], { timeoutMs: 30_000 });
        if (r.code === 0) for (const c of r.stdout.split("\n").filter((l) => l.trim() !== "")) seenContainers.add(c.trim());
    };

    const stop = async (): Promise<void> => {
        process.removeListener("exit", lastResort);
        const kubelet = started.find((s) => s.name === "kubelet");
        // kubelet first, so it does not restart what is removed next.
        if (kubelet) await stopOne(kubelet);
        const containerd = started.find((s) => s.name === "containerd");
        if (containerd && containerd.child.exitCode === null) {
            await rememberContainers();
            // Every pod's containers, sandboxes last (they hold the pods' namespaces).
            const tasks = await run("ctr", ["--address", containerdSocket, "--namespace", "k8s.io", "tasks", "list", "--quiet"], { timeoutMs: 30_000 });
            for (const t of tasks.stdout.split("\n").filter((l) => l.trim() !== "")) {
                await run("ctr", ["--address", containerdSocket, "--namespace", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", t.trim()], { timeoutMs: 30_000 });
            }
            for (const t of tasks.stdout.split("\n").filter((l) => l.trim() !== "")) {
                await run("ctr", ["--address", containerdSocket, "--namespace", "k8s.io", "tasks", "delete", "--force", t.trim()], { timeoutMs: 30_000 });
            }
            // Network namespaces containerd made for pods (not hostNetwork ones).
            for (const c of seenContainers) {
                const info = await run("ctr", ["--address", containerdSocket, "--namespace", "k8s.io", "containers", "info", c], { timeoutMs: 30_000 });
                const m = /"path":\s*"(\/var\/run\/netns\/cni-[0-9a-f-]+|\/run\/netns\/cni-[0-9a-f-]+)"/.exec(info.stdout);
                if (m && fs.existsSync(m[1])) {
                    spawnSync("umount", [m[1]]);
                    fs.rmSync(m[1], { force: true });
                }
            }
        }
        for (const s of [...started].reverse()) await stopOne(s);
        // Shims and hostNetwork containers live in the namespace and were started by this cluster
        // (in a namespace it was given, only processes whose command line names its dir).
        if (netnsCreated || linkCreated) {
            for (let round = 0; round < 20; round++) {
                const pids = spawnSync("ip", ["netns", "pids", netns], { encoding: "utf8" })
                    .stdout.split("\n")
                    .filter((l) => /^\d+$/.test(l.trim()))
                    .filter((p) => ownNetns || cmdlineOf(Number(p)).includes(dir) || isShimOf(Number(p), containerdSocket));
                if (pids.length === 0) break;
                for (const p of pids) {
                    try {
                        process.kill(Number(p), round < 5 ? "SIGTERM" : "SIGKILL");
                    } catch {
                        // gone
                    }
                }
                await sleep(250);
            }
        }
        for (const mp of mountsBelow(dir)) spawnSync("umount", ["-l", mp]);
        removeContainerCgroups(seenContainers);
        removeLogLinks(dir);
        if (netnsCreated) spawnSync("ip", ["netns", "delete", netns]);
        else if (linkCreated) spawnSync("ip", ["-n", netns, "link", "del", "node0"]);
        fs.rmSync(dir, { recursive: true, force: true });
    };
    const stopOne = async (s: { child: ChildProcess }): Promise<void> => {
        const pid = s.child.pid;
        if (pid === undefined || s.child.exitCode !== null || s.child.signalCode !== null) return;
        try {
            process.kill(pid, "SIGTERM");
        } catch {
            return;
        }
        for (let i = 0; i < 60 && processAlive(pid) && s.child.exitCode === null && s.child.signalCode === null; i++) await sleep(250);
        if (s.child.exitCode === null && s.child.signalCode === null && processAlive(pid)) process.kill(pid, "SIGKILL");
        for (let i = 0; i < 40 && s.child.exitCode === null && s.child.signalCode === null; i++) await sleep(100);
    };
    // If the test process dies without teardown, at least end the daemons.
    const lastResort = (): void => {
        for (const s of started) {
            if (s.child.pid !== undefined && s.child.exitCode === null) {
                try {
                    process.kill(s.child.pid, "SIGKILL");
                } catch {
                    /* gone */
                }
            }
        }
    };
    process.on("exit", lastResort);

    try {
        // The node's network.
        if (ownNetns) {
            must("ip", ["netns", "add", netns]);
            netnsCreated = true;
        }
        must("ip", ["-n", netns, "link", "set", "lo", "up"]);
        // A veth pair with both ends in the namespace (this kernel has no dummy links).
        must("ip", ["-n", netns, "link", "add", "node0", "type", "veth", "peer", "name", "node0p"]);
        linkCreated = true;
        must("ip", ["-n", netns, "link", "set", "node0p", "up"]);
        must("ip", ["-n", netns, "addr", "add", `${nodeIp}/24`, "dev", "node0"]);
        must("ip", ["-n", netns, "link", "set", "node0", "up"]);
        // Components look for a default route to pick their address.
        must("ip", ["-n", netns, "route", "add", "default", "dev", "node0"]);

        // Certificates and kubeconfigs.
        const pkiDir = path.join(dir, "pki");
        fs.mkdirSync(pkiDir);
        const pki = makeCa(pkiDir);
        const serving = makeCert(pki, pkiDir, "apiserver", "/CN=kube-apiserver", [
            `IP:${nodeIp}`, "IP:127.0.0.1", "IP:10.96.0.1", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
        ]);
        const apiserverKubelet = makeCert(pki, pkiDir, "apiserver-kubelet", "/O=system:masters/CN=kube-apiserver-kubelet-client");
        const server = `https://${nodeIp}:6443`;
        const kc = (name: string, subject: string): string => {
            const file = path.join(dir, `${name}.kubeconfig`);
            fs.writeFileSync(file, kubeconfigYaml(server, pki.ca, name === "admin" ? context : name, makeCert(pki, pkiDir, name, subject)));
            return file;
        };
        const adminKc = kc("admin", "/O=system:masters/CN=pcp-eval-admin");
        const cmKc = kc("controller-manager", "/CN=system:kube-controller-manager");
        const schedKc = kc("scheduler", "/CN=system:kube-scheduler");
        const kubeletKc = kc("kubelet", `/O=system:nodes/CN=system:node:${nodeName}`);
        const saKey = path.join(pkiDir, "sa.key");
        const saPub = path.join(pkiDir, "sa.pub");
        must("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", saKey]);
        must("openssl", ["ec", "-in", saKey, "-pubout", "-out", saPub]);

        // etcd, on the namespace's loopback.
        startDaemon("etcd", "etcd", [
            "--name", "pcp-eval", "--data-dir", path.join(dir, "etcd"),
            "--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
            "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", "pcp-eval=http://127.0.0.1:2380", "--log-level", "warn",
        ]);

        // containerd, all of its own in the dir.
        const cniConf = path.join(dir, "cni");
        fs.mkdirSync(cniConf);
        fs.writeFileSync(path.join(cniConf, "10-loopback.conflist"), JSON.stringify({ cniVersion: "0.4.0", name: "pcp-eval-loopback", plugins: [{ type: "loopback" }] }));
        const containerdConfig = path.join(dir, "containerd.toml");
        fs.writeFileSync(
            containerdConfig,
            [
                "version = 2",
                `root = "${path.join(dir, "containerd", "root")}"`,
                `state = "${path.join(dir, "containerd", "state")}"`,
                "[grpc]",
                `  address = "${containerdSocket}"`,
                "[ttrpc]",
                `  address = "${containerdSocket}.ttrpc"`,
                "[debug]",
                '  level = "warn"',
                "[plugins]",
                '  [plugins."io.containerd.internal.v1.opt"]',
                `    path = "${path.join(dir, "containerd", "opt")}"`,
                '  [plugins."io.containerd.grpc.v1.cri"]',
                `    sandbox_image = "${pauseRef}"`,
                "    restrict_oom_score_adj = true",
                "    enable_selinux = false",
                '    [plugins."io.containerd.grpc.v1.cri".cni]',
                `      bin_dir = "${cniDir}"`,
                `      conf_dir = "${cniConf}"`,
                '    [plugins."io.containerd.grpc.v1.cri".containerd]',
                '      snapshotter = "overlayfs"',
                '      default_runtime_name = "runc"',
                '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
                '        runtime_type = "io.containerd.runc.v2"',
                "",
            ].join("\n"),
        );
        startDaemon("containerd", "containerd", ["--config", containerdConfig]);
        await waitFor("containerd", 60, async () => (await run("ctr", ["--address", containerdSocket, "version"], { timeoutMs: 5000 })).code === 0);
        await ctr(["images", "import", "--no-unpack", path.join(tools.binDir, "..", "images", "pause.tar")]);

        const auditFree = ["--v=1"];
        startDaemon("kube-apiserver", bin("kube-apiserver"), [
            "--etcd-servers=http://127.0.0.1:2379",
            `--advertise-address=${nodeIp}`,
            "--bind-address=0.0.0.0",
            "--secure-port=6443",
            `--cert-dir=${path.join(dir, "apiserver")}`,
            `--client-ca-file=${pki.ca}`,
            `--tls-cert-file=${serving.cert}`,
            `--tls-private-key-file=${serving.key}`,
            `--kubelet-client-certificate=${apiserverKubelet.cert}`,
            `--kubelet-client-key=${apiserverKubelet.key}`,
            // The node's name resolves nowhere (no DNS in the namespace): reach kubelet (logs, exec, port-forward) by its address.
            "--kubelet-preferred-address-types=InternalIP",
            `--service-account-key-file=${saPub}`,
            `--service-account-signing-key-file=${saKey}`,
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/24",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            ...auditFree,
        ]);
        await waitFor("kube-apiserver /readyz", 120, async () => (await kubectl(["get", "--raw", "/readyz"], 10_000)).trim() === "ok");

        startDaemon("kube-controller-manager", bin("kube-controller-manager"), [
            `--kubeconfig=${cmKc}`,
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            `--service-account-private-key-file=${saKey}`,
            `--root-ca-file=${pki.ca}`,
            `--cluster-signing-cert-file=${pki.ca}`,
            `--cluster-signing-key-file=${pki.caKey}`,
            "--v=1",
        ]);
        startDaemon("kube-scheduler", bin("kube-scheduler"), [`--kubeconfig=${schedKc}`, "--bind-address=127.0.0.1", "--leader-elect=false", "--v=1"]);

        const kubeletConfig = path.join(dir, "kubelet.yaml");
        fs.writeFileSync(
            kubeletConfig,
            JSON.stringify({
                apiVersion: "kubelet.config.k8s.io/v1beta1",
                kind: "KubeletConfiguration",
                // cgroup v1 without systemd as PID 1: cgroupfs, no QoS tree, no allocatable enforcement.
                cgroupDriver: "cgroupfs",
                cgroupsPerQOS: false,
                enforceNodeAllocatable: [],
                failCgroupV1: false,
                failSwapOn: false,
                // Lowering its own oom_score_adj is refused here, as for the sandboxes.
                oomScoreAdj: 0,
                authentication: { anonymous: { enabled: false }, webhook: { enabled: false }, x509: { clientCAFile: pki.ca } },
                authorization: { mode: "AlwaysAllow" },
                address: nodeIp,
                readOnlyPort: 0,
                healthzBindAddress: "127.0.0.1",
                resolvConf: "",
                podLogsDir: path.join(dir, "pod-logs"),
                // The machine's disk is shared: do not evict or collect images because of it.
                evictionHard: { "memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%" },
                imageGCHighThresholdPercent: 100,
                imageGCLowThresholdPercent: 99,
                registerNode: true,
            }),
        );
        startDaemon("kubelet", bin("kubelet"), [
            `--config=${kubeletConfig}`,
            `--kubeconfig=${kubeletKc}`,
            `--container-runtime-endpoint=unix://${containerdSocket}`,
            `--root-dir=${path.join(dir, "kubelet")}`,
            `--cert-dir=${path.join(dir, "kubelet-pki")}`,
            `--hostname-override=${nodeName}`,
            `--node-ip=${nodeIp}`,
            "--v=1",
        ]);
        await waitFor(`node ${nodeName} Ready`, options.readySeconds ?? 180, async () => {
            const r = await kubectl(["get", "node", nodeName, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"], 10_000);
            return r.trim() === "True";
        });
        // The default service account (pods need it) comes from the controller manager.
        await waitFor("the default service account", 60, async () => (await kubectl(["get", "serviceaccount", "default", "-o", "name"], 10_000)).trim() !== "");

        const logTail = (component: string, lines = 20): string => tail(path.join(dir, `${component}.log`), lines);
        const cluster: Cluster = {
            kubeconfig: adminKc,
            context,
            netns,
            nodeName,
            nodeIp,
            containerdSocket,
            binDir: tools.binDir,
            dir,
            argv: nsenter,
            exec,
            kubectl,
            ctr,
            env,
            logTail,
            diagnose: async (namespace: string) => {
                const part = async (title: string, read: () => Promise<string>): Promise<string> => {
                    let text: string;
                    try {
                        text = (await read()).trimEnd();
                    } catch (err) {
                        text = `(could not read: ${(err as Error).message.trim()})`;
                    }
                    return `--- ${title}\n${text}`;
                };
                const parts = await Promise.all([
                    part(`pods in ${namespace}`, () => kubectl(["--namespace", namespace, "get", "pods", "--output=wide"], 30_000)),
                    part(`container states in ${namespace}`, () =>
                        kubectl(["--namespace", namespace, "get", "pods", "--output=jsonpath={range .items[*]}{.metadata.name}{': '}{.status.containerStatuses}{'\\n'}{end}"], 30_000),
                    ),
                    part(`events in ${namespace}`, () => kubectl(["--namespace", namespace, "get", "events", "--sort-by=.lastTimestamp"], 30_000)),
                    part("images in containerd (k8s.io)", () => ctr(["images", "list", "--quiet"])),
                ]);
                for (const component of ["kubelet", "containerd"]) parts.push(`--- ${component} log\n${logTail(component, 25)}`);
                return parts.join("\n");
            },
            stop,
        };
        return cluster;
    } catch (err) {
        await stop();
        throw err;
    }
}

function cmdlineOf(pid: number): string {
    try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
    } catch {
        return "";
    }
}

/** A containerd shim of this cluster's containerd, or a process in one of its containers (a shim's descendant). */
function isShimOf(pid: number, socket: string): boolean {
    for (let p = pid, depth = 0; p > 1 && depth < 8; depth++) {
        const cmd = cmdlineOf(p);
        if (cmd.includes("containerd-shim") && cmd.includes(socket)) return true;
        try {
            const stat = fs.readFileSync(`/proc/${p}/stat`, "utf8");
            p = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        } catch {
            return false;
        }
    }
    return false;
}

/** Removes cgroup directories named after containers of this cluster (runc leaves none on a clean delete). */
function removeContainerCgroups(ids: Set<string>): void {
    if (ids.size === 0) return;
    const roots = fs.existsSync("/sys/fs/cgroup") ? fs.readdirSync("/sys/fs/cgroup").map((c) => path.join("/sys/fs/cgroup", c)) : [];
    const found: string[] = [];
    const walk = (d: string, depth: number): void => {
        if (depth > 4) return;
        let entries: fs.Dirent[];
        try {
            entries = fs.readdirSync(d, { withFileTypes: true });
        } catch {
            return;
        }
        for (const e of entries) {
            if (!e.isDirectory()) continue;
            const p = path.join(d, e.name);
            if (ids.has(e.name)) found.push(p);
            else walk(p, depth + 1);
        }
    };
    for (const r of roots) walk(r, 0);
    for (const p of found.sort((a, b) => b.length - a.length)) {
        try {
            fs.rmdirSync(p);
        } catch {
            // not empty or gone: leave it
        }
    }
}

/** kubelet links every container's log into /var/log/containers (fixed path); remove links into dir. */
function removeLogLinks(dir: string): void {
    const logDir = "/var/log/containers";
    if (!fs.existsSync(logDir)) return;
    for (const name of fs.readdirSync(logDir)) {
        const p = path.join(logDir, name);
        try {
            if (fs.readlinkSync(p).startsWith(`${dir}/`)) fs.rmSync(p);
        } catch {
            // not a link
        }
    }
}
