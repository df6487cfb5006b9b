/**
 * Host checks before anything is created. On `pulumi up` every missing item
 * is listed in one error, each with how to get it; on `pulumi preview` the
 * same findings are warnings, so a plan can be reviewed on any machine.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { needsDocker, PcpEvalConfig } from "./config";
import { constants } from "./constants";
import { projectCacheDir } from "./cacheDir";
import { parseLastJsonLine } from "./run";

export { projectCacheDir };

export interface Finding {
    item: string;
    problem: string;
    fix: string;
}

export interface PreflightReport {
    missing: Finding[];
    /** Facts that change how things run but block nothing (e.g. TCG instead of KVM). */
    notes: string[];
}

/** What one probe command answered: ok is exit status 0 within its time. */
export interface ProbeResult {
    ok: boolean;
    stdout: string;
    stderr: string;
}

/**
 * What the checks ask of the host; tests pass a fake. run is async so that
 * independent probes run side by side: a preflight costs its slowest probe
 * (net.sh check's trial bridge, or a first KVM test boot), not their sum.
 */
export interface HostProbe {
    run(command: string, args: string[], timeoutMs: number, input?: string): Promise<ProbeResult>;
    isRoot(): boolean;
    exists(path: string): boolean;
}

export const realHost: HostProbe = {
    run(command, args, timeoutMs, input) {
        return new Promise((resolve) => {
            const child = spawn(command, args, { timeout: timeoutMs, stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
            let stdout = "";
            let stderr = "";
            child.stdout?.setEncoding("utf8").on("data", (d: string) => (stdout += d));
            child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr += d));
            // A command that cannot start (not on PATH) fails like one that exits non-zero, saying why.
            child.on("error", (e) => resolve({ ok: false, stdout, stderr: stderr || String(e) }));
            child.on("close", (code, signal) => resolve({ ok: code === 0 && signal === null, stdout, stderr }));
            child.stdin?.end(input);
        });
    },
    isRoot: () => typeof process.getuid === "function" && process.getuid() === 0,
    exists: (p) => fs.existsSync(p),
};

/** Kernels of the running host that a probe may boot (NixOS, then the usual /boot names). */
export function hostKernelCandidates(release: string): string[] {
    return ["/run/booted-system/kernel", `/boot/vmlinuz-${release}`, "/boot/vmlinuz"];
}

/** The one KVM probe of the project (host/kvm-probe.sh), shared with the fixture VM runners. */
export const kvmProbeScript = path.resolve(__dirname, "..", "host", "kvm-probe.sh");

/**
 * /dev/kvm can exist and still hang or abort QEMU once a guest kernel runs;
 * only booting one under KVM tells. host/kvm-probe.sh boots the host's own
 * kernel with no root file system (it panics at once and, with -no-reboot,
 * QEMU exits), or, without a readable kernel, runs an empty machine, a weaker
 * check its answer says is weaker. The verdict is remembered per host boot in
 * `cacheFile` (default: kvm-probe under projectCacheDir()), so a hanging KVM
 * costs its timeout once.
 */
export async function kvmWorks(host: HostProbe, release: string, cacheFile: string = path.join(projectCacheDir(), "kvm-probe")): Promise<{ usable: boolean; why: string }> {
    if (!host.exists("/dev/kvm")) return { usable: false, why: "/dev/kvm does not exist" };
    let kernel: string | undefined;
    for (const k of hostKernelCandidates(release)) {
        if (host.exists(k) && (await host.run("test", ["-r", k], 2000)).ok) {
            kernel = k;
            break;
        }
    }
    const args = [kvmProbeScript, "--cache", cacheFile, ...(kernel === undefined ? [] : ["--kernel", kernel])];
    const probe = await host.run("bash", args, 30000);
    try {
        const verdict = JSON.parse(probe.stdout.trim().split("\n").pop() ?? "") as { usable: boolean; why: string };
        if (typeof verdict.usable === "boolean" && typeof verdict.why === "string") return { usable: verdict.usable, why: verdict.why };
    } catch {
        // Reported below.
    }
    return { usable: false, why: `the KVM probe (${kvmProbeScript}) failed: ${probe.stderr.trim().split("\n").pop() || "no answer"}` };
}

/**
 * The verdict host/kvm-probe.sh remembered for this host boot ("<boot_id>
 * yes|no <why>" in its cache file), read without probing or writing: what a
 * preview may know. Undefined when none is remembered for this boot.
 */
export function rememberedKvmVerdict(cacheFile: string, bootIdFile = "/proc/sys/kernel/random/boot_id"): { usable: boolean; why: string } | undefined {
    try {
        const boot = fs.readFileSync(bootIdFile, "utf8").trim();
        const m = /^(\S+) (yes|no) ?(.*)$/.exec(fs.readFileSync(cacheFile, "utf8").split("\n")[0] ?? "");
        if (m === null || m[1] !== boot) return undefined;
        return { usable: m[2] === "yes", why: `${m[3] || "remembered"} (remembered for this boot)` };
    } catch {
        return undefined;
    }
}

/**
 * `dryRun` (preview) runs no KVM test boot and writes no verdict: a preview
 * is quick and touches nothing. It uses the verdict remembered for this boot,
 * or, with none, plans for TCG and says that `up` will probe.
 */
export async function preflight(
    cfg: PcpEvalConfig,
    host: HostProbe,
    release: string = os.release(),
    kvmCacheFile: string = path.join(projectCacheDir(), "kvm-probe"),
    dryRun = false,
): Promise<PreflightReport> {
    const needsNix = cfg.vms.length > 0 || cfg.container !== undefined || cfg.kubernetes !== undefined;
    const nothing: Promise<PreflightReport> = Promise.resolve({ missing: [], notes: [] });
    // Every part starts at once; the report lists them in this order whatever finishes first.
    const parts = await Promise.all([
        needsNix ? nixFindings(host) : nothing,
        needsDocker(cfg) ? dockerFindings(host) : nothing,
        cfg.vms.length > 0 ? vmFindings(cfg, host, release, kvmCacheFile, dryRun) : nothing,
        cfg.bridge !== undefined ? netCheckFindings(cfg, host).then((missing) => ({ missing, notes: [] })) : nothing,
        cfg.kubernetes !== undefined ? kubeFindings(cfg.kubernetes, host) : nothing,
    ]);
    return { missing: parts.flatMap((p) => p.missing), notes: parts.flatMap((p) => p.notes) };
}

async function nixFindings(host: HostProbe): Promise<PreflightReport> {
    const nix = await host.run("nix", ["--version"], 10000);
    if (nix.ok) return { missing: [], notes: [] };
    return { missing: [{ item: "nix", problem: "the nix command is not on PATH", fix: "install Nix (https://nixos.org/download) or `apt-get install nix-bin`, with flakes enabled" }], notes: [] };
}

async function dockerFindings(host: HostProbe): Promise<PreflightReport> {
    const info = await host.run("docker", ["info", "--format", "{{.ServerVersion}}"], 15000);
    if (info.ok) return { missing: [], notes: [] };
    return {
        missing: [{
            item: "docker daemon",
            problem: `no reachable Docker daemon (${info.stderr.trim().split("\n").pop() || "docker not found"})`,
            fix: "install Docker and start it (`systemctl start docker`), or point DOCKER_HOST at a running daemon",
        }],
        notes: [],
    };
}

/** The accelerator the VMs will use, and the SSH tools they need. */
async function vmFindings(cfg: PcpEvalConfig, host: HostProbe, release: string, kvmCacheFile: string, dryRun: boolean): Promise<PreflightReport> {
    const accelNote = async (): Promise<string> => {
        if (cfg.vmAccel !== "auto") return `VMs use ${cfg.vmAccel.toUpperCase()} (pcp-eval:vmAccel)`;
        if (!(await host.run("qemu-system-x86_64", ["--version"], 10000)).ok) {
            return "qemu-system-x86_64 is not on PATH; the Nix-built runners bring their own QEMU, but the KVM check could not run, so VMs use TCG (slow)";
        }
        const remembered = dryRun ? rememberedKvmVerdict(kvmCacheFile) : undefined;
        if (dryRun && remembered === undefined) {
            return (
                "preview runs no KVM test boot and writes no verdict, and no KVM verdict is remembered for this boot yet: " +
                "`pulumi up` probes KVM first; each VM picks KVM or TCG from that verdict when it starts (no runner depends on it)"
            );
        }
        const kvm = remembered ?? (await kvmWorks(host, release, kvmCacheFile));
        return kvm.usable ? `KVM works (${kvm.why}): VMs use hardware virtualisation` : `KVM is not usable (${kvm.why}); VMs run under TCG, several times slower`;
    };
    const sshKeygen = async (): Promise<Finding[]> => {
        if (cfg.sshPublicKey !== undefined) return [];
        if ((await host.run("ssh-keygen", ["-V"], 5000)).ok || (await host.run("sh", ["-c", "command -v ssh-keygen"], 5000)).ok) return [];
        return [{ item: "ssh-keygen", problem: "needed to generate the stack's SSH key", fix: "`apt-get install openssh-client`, or set pcp-eval:sshPublicKey" }];
    };
    const ssh = async (): Promise<Finding[]> => {
        const grafanaVm = cfg.vms.find((vm) => constants.variants[vm.variant].features.grafana);
        if (grafanaVm === undefined || (await host.run("sh", ["-c", "command -v ssh"], 5000)).ok) return [];
        return [{ item: "ssh", problem: `needed to read the Grafana admin password of VM ${grafanaVm.name} (host/grafana-password.sh)`, fix: "`apt-get install openssh-client`" }];
    };
    const [note, keygen, sshFinding] = await Promise.all([accelNote(), sshKeygen(), ssh()]);
    return { missing: [...keygen, ...sshFinding], notes: [note] };
}

async function kubeFindings(kube: NonNullable<PcpEvalConfig["kubernetes"]>, host: HostProbe): Promise<PreflightReport> {
    const ctxArgs = ["config", "get-contexts", "-o", "name", ...(kube.kubeconfig ? ["--kubeconfig", kube.kubeconfig] : [])];
    const contexts = await host.run("kubectl", ctxArgs, 10000);
    if (!contexts.ok) {
        return { missing: [{ item: "kubectl", problem: "kubectl is missing or has no kubeconfig", fix: "install kubectl and create a cluster (e.g. `minikube start`)" }], notes: [] };
    }
    if (contexts.stdout.split("\n").map((c) => c.trim()).includes(kube.context)) return { missing: [], notes: [] };
    return {
        missing: [{
            item: `kube context ${kube.context}`,
            problem: `no context "${kube.context}" in the kubeconfig (have: ${contexts.stdout.trim().split("\n").join(", ") || "none"})`,
            fix: kube.context === "minikube" ? "`minikube start`" : "set pcp-eval:kubeContext to one of `kubectl config get-contexts -o name`",
        }],
        notes: [],
    };
}

/**
 * The report of a skipped preflight (pcp-eval:skipPreflight): nothing checked,
 * and no KVM test boot, so no verdict is written; each VM with vmAccel auto
 * reads the verdict remembered for this boot when it starts, and without one
 * runs TCG. Said as a note, so a user who expected KVM knows why.
 */
export function skippedPreflight(cfg: PcpEvalConfig): PreflightReport {
    const notes = ["preflight skipped (pcp-eval:skipPreflight)"];
    if (cfg.vms.length > 0 && cfg.vmAccel === "auto") {
        notes.push("no KVM test boot runs either: VMs use TCG unless a KVM verdict is remembered for this host boot (set pcp-eval:vmAccel kvm to force KVM)");
    }
    return { missing: [], notes };
}

/** `net.sh check` stdout, as far as preflight reads it. */
interface NetCheck {
    needs?: Array<{ name: string; status: string; detail?: string; fix?: string }>;
}

/**
 * What TAP networking lacks, by host/net.sh check: the one list of what the
 * bridge needs (tools, privileges with --sudo as configured, /dev/net/tun,
 * kernel features, a trial bridge and TAP in a scratch network namespace),
 * which a user also runs by hand.
 */
export async function netCheckFindings(cfg: PcpEvalConfig, host: HostProbe): Promise<Finding[]> {
    const script = path.join(cfg.projectDir, "host", "net.sh");
    const r = await host.run("bash", [script, "check", ...(cfg.useSudo ? ["--sudo"] : [])], 30000);
    let check: NetCheck;
    try {
        check = parseLastJsonLine<NetCheck>(r.stdout, "net.sh check");
    } catch {
        const why = r.stderr.trim().split("\n").pop() || "no output";
        return [{ item: "net.sh check", problem: `could not judge the host's TAP networking (${why})`, fix: `run \`bash ${script} check\` and fix what it reports` }];
    }
    return (check.needs ?? [])
        .filter((n) => n.status === "missing")
        .map((n) => ({ item: n.name, problem: n.detail ?? "missing", fix: n.fix ?? `see \`bash ${script} check\`` }));
}

export function formatFindings(missing: Finding[]): string {
    return missing.map((f) => `  - ${f.item}: ${f.problem}; fix: ${f.fix}`).join("\n");
}

/** Throws on `up` when anything is missing; warns on preview. */
export function enforcePreflight(report: PreflightReport, dryRun: boolean, warn: (msg: string) => void): void {
    for (const note of report.notes) warn(`preflight: ${note}`);
    if (report.missing.length === 0) return;
    const message = `pcp-eval preflight: this host lacks ${report.missing.length} thing${report.missing.length === 1 ? "" : "s"} the configuration needs:\n${formatFindings(report.missing)}`;
    if (dryRun) {
        warn(`${message}\n(preview goes on; \`pulumi up\` will stop here before creating anything)`);
        return;
    }
    throw new Error(`${message}\nNothing was created.`);
}

/** How long a clean preflight verdict is reused (see cachedPreflight). */
export const preflightCacheTtlMs = 10 * 60_000;

/**
 * The key of a preflight verdict: what the checks depend on. The host boot and
 * network namespace (a reboot or another namespace can change every answer),
 * the user and PATH (which tools are found, which privileges apply), the
 * configuration the checks read, and the check scripts' and this file's text.
 */
export function preflightCacheKey(cfg: PcpEvalConfig, readText: (file: string) => string = (f) => fs.readFileSync(f, "utf8")): string {
    const crypto: typeof import("node:crypto") = require("node:crypto");
    const tryRead = (f: string): string => {
        try {
            return readText(f);
        } catch {
            return "";
        }
    };
    let netns = "";
    try {
        netns = fs.readlinkSync("/proc/self/ns/net");
    } catch {
        // No procfs: the boot id and the rest still separate hosts.
    }
    const facts = {
        boot: tryRead("/proc/sys/kernel/random/boot_id").trim(),
        netns,
        uid: typeof process.getuid === "function" ? process.getuid() : -1,
        path: process.env.PATH ?? "",
        kubeconfig: process.env.KUBECONFIG ?? "",
        cfg: {
            vms: cfg.vms,
            container: cfg.container,
            bridge: cfg.bridge,
            kubernetes: cfg.kubernetes,
            vmAccel: cfg.vmAccel,
            useSudo: cfg.useSudo,
            sshPublicKey: cfg.sshPublicKey === undefined,
            projectDir: cfg.projectDir,
        },
        code: [__filename, kvmProbeScript, path.join(cfg.projectDir, "host", "net.sh")].map(tryRead),
    };
    return crypto.createHash("sha256").update(JSON.stringify(facts)).digest("hex").slice(0, 32);
}

/**
 * preflight() costs its slowest probe (net.sh check's trial bridge in a
 * scratch namespace, ~0.3 s here; a first KVM test boot, up to its timeout)
 * and Pulumi runs the program twice per `up` (preview, then update), and
 * again on every no-op `up`. A clean verdict
 * (nothing missing) is therefore kept for preflightCacheTtlMs under the
 * project's cache directory, keyed by preflightCacheKey; a verdict with
 * findings is never kept, so a fix shows at once. What changes inside the TTL
 * without changing the key (a tool removed by hand) still fails, later, in
 * the host script that needs it, with that script's own error. A preview
 * (`readOnly`) may reuse a kept verdict but never writes one: preview touches
 * nothing on the host.
 */
export async function cachedPreflight(
    cfg: PcpEvalConfig,
    compute: () => Promise<PreflightReport>,
    cacheDir: string = projectCacheDir(),
    now: () => number = Date.now,
    key: string = preflightCacheKey(cfg),
    readOnly = false,
): Promise<PreflightReport & { cached: boolean }> {
    const file = path.join(cacheDir, "preflight", `${key}.json`);
    try {
        const kept = JSON.parse(fs.readFileSync(file, "utf8")) as { at: number; report: PreflightReport };
        const age = now() - kept.at;
        if (age >= 0 && age < preflightCacheTtlMs && kept.report.missing.length === 0) return { ...kept.report, cached: true };
    } catch {
        // None kept, or unreadable: check afresh.
    }
    const report = await compute();
    if (report.missing.length === 0 && !readOnly) {
        try {
            fs.mkdirSync(path.dirname(file), { recursive: true });
            const tmp = `${file}.${process.pid}.tmp`;
            fs.writeFileSync(tmp, JSON.stringify({ at: now(), report }));
            fs.renameSync(tmp, file);
        } catch {
            // A cache that cannot be written costs time, not correctness.
        }
    }
    return { ...report, cached: false };
}
