/**
 * Host checks before anything is created. On `pulumi up` every missing item
 * is listed in one error, each with how to get it; on `pulumi preview` the
 * same findings are warnings, so a plan can be reviewed on any machine.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PcpEvalConfig } from "./config";
import { parseLastJsonLine } from "./run";

export interface Finding {
    item: string;
    problem: string;
    fix: string;
}

export interface PreflightReport {
    missing: Finding[];
    /** Facts that change how things run but block nothing (e.g. TCG instead of KVM). */
    notes: string[];
    /** Whether QEMU may use KVM on this host. */
    kvmUsable: boolean;
}

/** What the checks ask of the host; tests pass a fake. */
export interface HostProbe {
    run(command: string, args: string[], timeoutMs: number, input?: string): { ok: boolean; stdout: string; stderr: string };
    isRoot(): boolean;
    exists(path: string): boolean;
}

export const realHost: HostProbe = {
    run(command, args, timeoutMs, input) {
        const r = spawnSync(command, args, { encoding: "utf8", timeout: timeoutMs, input, stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
        return { ok: r.status === 0 && r.error === undefined, stdout: r.stdout ?? "", stderr: r.stderr ?? String(r.error ?? "") };
    },
    isRoot: () => typeof process.getuid === "function" && process.getuid() === 0,
    exists: (p) => fs.existsSync(p),
};

/** Kernels of the running host that a probe may boot (NixOS, then the usual /boot names). */
export function hostKernelCandidates(release: string): string[] {
    return ["/run/booted-system/kernel", `/boot/vmlinuz-${release}`, "/boot/vmlinuz"];
}

/**
 * Boots `kernel` with no root file system under `accel`: it panics at once
 * and, with -no-reboot, QEMU exits 0. Killed after 20 s.
 */
export function testBoot(host: HostProbe, kernel: string, accel: "kvm" | "tcg"): { ok: boolean; detail: string } {
    const boot = host.run(
        "timeout",
        ["-s", "KILL", "20", "qemu-system-x86_64", "-accel", accel, "-machine", "pc", "-m", "256", "-nodefaults", "-no-user-config",
            "-display", "none", "-serial", "none", "-no-reboot", "-kernel", kernel, "-append", "panic=-1 loglevel=0"],
        25000,
    );
    return { ok: boot.ok, detail: boot.stderr.trim().split("\n").pop() || (boot.ok ? "exited" : "killed") };
}

/**
 * /dev/kvm can exist and still hang or abort QEMU once a guest kernel runs;
 * only booting one under KVM tells. The probe boots the host's own kernel
 * with no root file system: it panics at once and, with -no-reboot, QEMU
 * exits. No exit in time means KVM hangs here. Without a readable kernel the
 * probe falls back to running an empty machine's BIOS, a weaker check that
 * the note says is weaker.
 */
export function kvmWorks(host: HostProbe, release: string): { usable: boolean; why: string } {
    if (!host.exists("/dev/kvm")) return { usable: false, why: "/dev/kvm does not exist" };
    const kernel = hostKernelCandidates(release).find((k) => host.exists(k) && host.run("test", ["-r", k], 2000).ok);
    if (kernel !== undefined) {
        const boot = testBoot(host, kernel, "kvm");
        return boot.ok
            ? { usable: true, why: `a test boot of ${kernel} under KVM ran to its end` }
            : { usable: false, why: `a test boot of ${kernel} under KVM did not finish in 20 s (${boot.detail})` };
    }
    const script =
        `(printf '{"execute":"qmp_capabilities"}\\n'; sleep 1.5; printf '{"execute":"query-status"}\\n{"execute":"quit"}\\n') | ` +
        "qemu-system-x86_64 -accel kvm -machine pc -m 64 -nodefaults -display none -qmp stdio";
    const qemu = host.run("sh", ["-c", script], 8000);
    if (qemu.ok && /"running": ?true/.test(qemu.stdout)) {
        return { usable: true, why: "an empty KVM machine ran (no host kernel was readable for a full test boot; set pcp-eval:vmAccel tcg if VMs hang)" };
    }
    return { usable: false, why: `QEMU with KVM failed or hung: ${qemu.stderr.trim().split("\n").pop() || "no answer"}` };
}

/**
 * kvmWorks, remembered per host boot in `cacheFile`: a hanging KVM costs its
 * 20 s once, not on every preview.
 */
export function kvmWorksCached(host: HostProbe, release: string, cacheFile: string): { usable: boolean; why: string } {
    let bootId = "";
    try {
        bootId = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
        const cached = JSON.parse(fs.readFileSync(cacheFile, "utf8")) as { bootId: string; release: string; usable: boolean; why: string };
        if (cached.bootId === bootId && cached.release === release) return { usable: cached.usable, why: `${cached.why}; remembered for this boot` };
    } catch {
        // No cache yet, or unreadable: probe.
    }
    const verdict = kvmWorks(host, release);
    if (bootId !== "") {
        try {
            fs.mkdirSync(path.dirname(cacheFile), { recursive: true });
            fs.writeFileSync(cacheFile, `${JSON.stringify({ bootId, release, ...verdict })}\n`);
        } catch {
            // A read-only state dir only costs the next run another probe.
        }
    }
    return verdict;
}

export function preflight(cfg: PcpEvalConfig, host: HostProbe, release: string = os.release(), kvmCacheFile?: string): PreflightReport {
    const missing: Finding[] = [];
    const notes: string[] = [];
    const needsNix = cfg.vms.length > 0 || cfg.container !== undefined || cfg.kubernetes !== undefined;
    const needsDocker = cfg.container !== undefined || cfg.kubernetes !== undefined;
    const needsPrivilege = cfg.bridge !== undefined;

    if (needsNix) {
        const nix = host.run("nix", ["--version"], 10000);
        if (!nix.ok) {
            missing.push({ item: "nix", problem: "the nix command is not on PATH", fix: "install Nix (https://nixos.org/download) or `apt-get install nix-bin`, with flakes enabled" });
        }
    }
    if (needsDocker) {
        const info = host.run("docker", ["info", "--format", "{{.ServerVersion}}"], 15000);
        if (!info.ok) {
            missing.push({
                item: "docker daemon",
                problem: `no reachable Docker daemon (${info.stderr.trim().split("\n").pop() || "docker not found"})`,
                fix: "install Docker and start it (`systemctl start docker`), or point DOCKER_HOST at a running daemon",
            });
        }
    }
    let kvmUsable = cfg.vmAccel === "kvm";
    if (cfg.vms.length > 0) {
        if (cfg.vmAccel !== "auto") {
            notes.push(`VMs use ${cfg.vmAccel.toUpperCase()} (pcp-eval:vmAccel)`);
        } else if (!host.run("qemu-system-x86_64", ["--version"], 10000).ok) {
            notes.push("qemu-system-x86_64 is not on PATH; the Nix-built runners bring their own QEMU, but the KVM check could not run, so VMs use TCG (slow)");
        } else {
            const kvm = kvmCacheFile === undefined ? kvmWorks(host, release) : kvmWorksCached(host, release, kvmCacheFile);
            kvmUsable = kvm.usable;
            notes.push(kvm.usable ? `KVM works (${kvm.why}): VMs use hardware virtualisation` : `KVM is not usable (${kvm.why}); VMs run under TCG, several times slower`);
        }
        if (cfg.sshPublicKey === undefined && !host.run("ssh-keygen", ["-V"], 5000).ok && !host.run("sh", ["-c", "command -v ssh-keygen"], 5000).ok) {
            missing.push({ item: "ssh-keygen", problem: "needed to generate the stack's SSH key", fix: "`apt-get install openssh-client`, or set pcp-eval:sshPublicKey" });
        }
    }
    if (needsPrivilege) missing.push(...netCheckFindings(cfg, host));
    if (cfg.kubernetes !== undefined) {
        const ctxArgs = ["config", "get-contexts", "-o", "name", ...(cfg.kubernetes.kubeconfig ? ["--kubeconfig", cfg.kubernetes.kubeconfig] : [])];
        const contexts = host.run("kubectl", ctxArgs, 10000);
        if (!contexts.ok) {
            missing.push({ item: "kubectl", problem: "kubectl is missing or has no kubeconfig", fix: "install kubectl and create a cluster (e.g. `minikube start`)" });
        } else if (!contexts.stdout.split("\n").map((s) => s.trim()).includes(cfg.kubernetes.context)) {
            missing.push({
                item: `kube context ${cfg.kubernetes.context}`,
                problem: `no context "${cfg.kubernetes.context}" in the kubeconfig (have: ${contexts.stdout.trim().split("\n").join(", ") || "none"})`,
                fix: cfg.kubernetes.context === "minikube" ? "`minikube start`" : "set pcp-eval:kubeContext to one of `kubectl config get-contexts -o name`",
            });
        }
    }
    return { missing, notes, kvmUsable };
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
export function netCheckFindings(cfg: PcpEvalConfig, host: HostProbe): Finding[] {
    const script = path.join(cfg.projectDir, "host", "net.sh");
    const r = host.run("bash", [script, "check", ...(cfg.useSudo ? ["--sudo"] : [])], 30000);
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
