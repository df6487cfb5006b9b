import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseConfig, PcpEvalConfig } from "./config";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { enforcePreflight, HostProbe, kvmProbeScript, preflight, projectCacheDir, rememberedKvmVerdict } from "./preflight";

function cfgOf(raw: Record<string, unknown>): PcpEvalConfig {
    return parseConfig(Object.fromEntries(Object.entries(raw).map(([k, v]) => [`pcp-eval:${k}`, typeof v === "string" ? v : JSON.stringify(v)])), "unit", "/srv/p");
}

/** A host where the named commands fail and everything else succeeds. */
function fakeHost(opts: { failing?: string[]; root?: boolean; missingPaths?: string[]; contexts?: string[]; kvmHangs?: boolean }): HostProbe & { calls: string[] } {
    const calls: string[] = [];
    return {
        calls,
        run(command, args) {
            const line = [command, ...args].join(" ");
            calls.push(line);
            const failing = (opts.failing ?? []).some((f) => line.startsWith(f) || (command === "sh" && args[1] === `command -v ${f}`));
            if (failing) return { ok: false, stdout: "", stderr: `${command}: not found` };
            if (command === "kubectl") return { ok: true, stdout: (opts.contexts ?? ["minikube"]).join("\n") + "\n", stderr: "" };
            if (command === "bash" && args[0] === kvmProbeScript) {
                // What host/kvm-probe.sh prints (its own behaviour is tested in test/integration/kvm-probe.test.ts).
                const kernel = args.includes("--kernel") ? args[args.indexOf("--kernel") + 1] : undefined;
                const why = kernel === undefined ? "an empty KVM machine ran (set pcp-eval:vmAccel tcg if VMs hang)" : `a test boot of ${kernel} under KVM ${opts.kvmHangs ? "did not finish in 10 s" : "ran to its end"}`;
                return { ok: true, stdout: `${JSON.stringify({ usable: !opts.kvmHangs, why, cached: false, seconds: 1 })}\n`, stderr: "" };
            }
            return { ok: true, stdout: "", stderr: "" };
        },
        isRoot: () => opts.root ?? true,
        exists: (p) => !(opts.missingPaths ?? []).includes(p),
    };
}

const full = { containerEnabled: true, bridgeEnabled: true, vms: ["eval", "grafana:tap"], kubernetesEnabled: true, kubeContext: "minikube" };

describe("preflight", () => {
    it("a complete host has nothing missing and KVM usable", () => {
        const report = preflight(cfgOf(full), fakeHost({}));
        assert.deepEqual(report.missing, []);
        assert.equal(report.kvmUsable, true);
    });

    it("lists every missing item with how to get it, in one report", () => {
        const host = fakeHost({ failing: ["nix", "docker", "ip", "nft", "sudo"], root: false, missingPaths: ["/dev/net/tun"], contexts: ["kind-x"] });
        const report = preflight(cfgOf({ ...full, useSudo: true }), host);
        const items = report.missing.map((f) => f.item);
        assert.deepEqual(items, ["nix", "docker daemon", "passwordless sudo", "ip", "nft", "/dev/net/tun", "kube context minikube"]);
        for (const f of report.missing) assert.ok(f.fix.length > 0, `${f.item} needs a fix`);
        assert.match(report.missing.at(-1)!.fix, /minikube start/);
    });

    it("not root and useSudo off: asks for root or useSudo", () => {
        const report = preflight(cfgOf({ bridgeEnabled: true }), fakeHost({ root: false }));
        assert.deepEqual(report.missing.map((f) => f.item), ["privileges for the bridge"]);
        assert.match(report.missing[0]!.fix, /pcp-eval:useSudo true/);
    });

    it("checks only what the config needs", () => {
        const host = fakeHost({ failing: ["docker", "kubectl", "nft"] });
        const report = preflight(cfgOf({ vms: ["base"] }), host);
        assert.deepEqual(report.missing, []);
        assert.ok(!host.calls.some((c) => c.startsWith("docker") || c.startsWith("kubectl")));
    });

    it("a grafana VM needs the ssh client (its admin password is read over SSH); other VMs do not", () => {
        const grafana = preflight(cfgOf({ vms: ["grafana"] }), fakeHost({ failing: ["ssh"] }));
        assert.deepEqual(grafana.missing.map((f) => f.item), ["ssh"]);
        assert.match(grafana.missing[0]!.problem, /Grafana admin password of VM grafana /);
        assert.deepEqual(preflight(cfgOf({ vms: ["base"] }), fakeHost({ failing: ["ssh"] })).missing, []);
    });

    it("a /dev/kvm whose test boot hangs means TCG, noted but not blocking", () => {
        const host = fakeHost({ kvmHangs: true });
        const report = preflight(cfgOf({ vms: ["base"] }), host, "6.1.0-test", "/tmp/verdict");
        assert.equal(report.kvmUsable, false);
        assert.deepEqual(report.missing, []);
        assert.ok(report.notes.some((n) => /did not finish in 10 s.*TCG/.test(n)), report.notes.join("\n"));
        assert.ok(host.calls.includes(`bash ${kvmProbeScript} --cache /tmp/verdict --kernel /run/booted-system/kernel`), "asks the one probe, with the host's own kernel");
    });

    it("boots the first readable host kernel, and falls back to the probe's empty-machine check without one", () => {
        const withBoot = fakeHost({ missingPaths: ["/run/booted-system/kernel"] });
        assert.equal(preflight(cfgOf({ vms: ["base"] }), withBoot, "6.1.0-test").kvmUsable, true);
        assert.ok(withBoot.calls.some((c) => c.endsWith("--kernel /boot/vmlinuz-6.1.0-test")));
        const noKernel = fakeHost({ missingPaths: ["/run/booted-system/kernel", "/boot/vmlinuz-6.1.0-test", "/boot/vmlinuz"] });
        const report = preflight(cfgOf({ vms: ["base"] }), noKernel, "6.1.0-test");
        assert.equal(report.kvmUsable, true);
        assert.ok(noKernel.calls.some((c) => c.startsWith(`bash ${kvmProbeScript}`) && !c.includes("--kernel")));
        assert.ok(report.notes.some((n) => /set pcp-eval:vmAccel tcg if VMs hang/.test(n)));
    });

    it("preview runs no probe and writes nothing: it uses the verdict remembered for this boot, else plans TCG and says up will probe", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe15-preflight-"));
        try {
            const cache = path.join(dir, "kvm-probe");
            const host = fakeHost({});
            const none = preflight(cfgOf({ vms: ["base"] }), host, "6.1.0-test", cache, true);
            assert.equal(none.kvmUsable, false);
            assert.ok(none.notes.some((n) => /preview runs no KVM test boot.*`pulumi up` probes KVM/.test(n)), none.notes.join("\n"));
            assert.deepEqual(host.calls.filter((c) => c.includes("kvm-probe")), [], "no probe boot in a preview");
            assert.deepEqual(fs.readdirSync(dir), [], "no file written by a preview");

            const boot = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
            fs.writeFileSync(cache, `${boot} yes a test boot ran to its end\n`);
            assert.equal(preflight(cfgOf({ vms: ["base"] }), host, "6.1.0-test", cache, true).kvmUsable, true);
            fs.writeFileSync(cache, `another-boot yes a test boot ran to its end\n`);
            assert.equal(rememberedKvmVerdict(cache), undefined, "a verdict of another boot is not this boot's");
            assert.deepEqual(host.calls.filter((c) => c.includes("kvm-probe")), []);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("no /dev/kvm: TCG without asking the probe", () => {
        const host = fakeHost({ missingPaths: ["/dev/kvm"] });
        assert.equal(preflight(cfgOf({ vms: ["base"] }), host, "6.1.0-test").kvmUsable, false);
        assert.ok(!host.calls.some((c) => c.includes("kvm-probe")));
    });

    it("the project cache root is PCP_EVAL_CACHE_DIR, else XDG_CACHE_HOME/pcp-eval, else ~/.cache/pcp-eval", () => {
        assert.equal(projectCacheDir({ PCP_EVAL_CACHE_DIR: "/x/cold", XDG_CACHE_HOME: "/y" }), "/x/cold");
        assert.equal(projectCacheDir({ XDG_CACHE_HOME: "/y" }), "/y/pcp-eval");
        assert.equal(projectCacheDir({}), path.join(os.homedir(), ".cache", "pcp-eval"));
    });

    it("vmAccel kvm or tcg skips the probe and decides", () => {
        for (const accel of ["kvm", "tcg"]) {
            const host = fakeHost({});
            const report = preflight(cfgOf({ vms: ["base"], vmAccel: accel }), host, "6.1.0-test");
            assert.equal(report.kvmUsable, accel === "kvm");
            assert.ok(!host.calls.some((c) => c.includes("-accel kvm")));
        }
    });

    it("up fails with every finding in one message; preview only warns", () => {
        const report = preflight(cfgOf(full), fakeHost({ failing: ["nix", "docker"] }));
        const warnings: string[] = [];
        enforcePreflight(report, true, (m) => warnings.push(m));
        assert.ok(warnings.some((w) => /lacks 2 things/.test(w) && /preview goes on/.test(w)));
        assert.throws(() => enforcePreflight(report, false, () => undefined), /lacks 2 things[\s\S]*- nix:[\s\S]*- docker daemon:[\s\S]*Nothing was created/);
    });

});
