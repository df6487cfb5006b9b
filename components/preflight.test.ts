import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseConfig, PcpEvalConfig } from "./config";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { requireTools } from "../test/helpers/tools";
import { cachedPreflight, enforcePreflight, HostProbe, kvmProbeScript, preflight, preflightCacheKey, preflightCacheTtlMs, projectCacheDir, realHost, rememberedKvmVerdict, skippedPreflight } from "./preflight";

/** Asserts that one of the report's notes matches `pattern` (the notes are what a user sees of the KVM verdict). */
function assertNote(report: { notes: string[] }, pattern: RegExp): void {
    assert.ok(report.notes.some((n) => pattern.test(n)), `no note matches ${pattern}:\n${report.notes.join("\n")}`);
}

function cfgOf(raw: Record<string, unknown>): PcpEvalConfig {
    return parseConfig(Object.fromEntries(Object.entries(raw).map(([k, v]) => [`pcp-eval:${k}`, typeof v === "string" ? v : JSON.stringify(v)])), "unit", "/srv/p");
}

/** A host where the named commands fail and everything else succeeds. */
/** `net.sh check` output with the named needs missing (each with a fix). */
function netCheck(missing: string[] = []): string {
    const needs = ["ip", "nft", "privileges", "/dev/net/tun"].map((name) =>
        missing.includes(name) ? { name, status: "missing", detail: `${name} is missing`, fix: `get ${name}` } : { name, status: "ok", detail: "" });
    return JSON.stringify({ verb: "check", ok: missing.length === 0, needs }) + "\n";
}

function fakeHost(opts: { failing?: string[]; root?: boolean; missingPaths?: string[]; contexts?: string[]; netMissing?: string[]; kvmHangs?: boolean }): HostProbe & { calls: string[] } {
    const calls: string[] = [];
    return {
        calls,
        async run(command, args) {
            const line = [command, ...args].join(" ");
            calls.push(line);
            const failing = (opts.failing ?? []).some((f) => line.startsWith(f) || (command === "sh" && args[1] === `command -v ${f}`));
            if (failing) return { ok: false, stdout: "", stderr: `${command}: not found` };
            if (command === "bash" && args[1] === "check") return { ok: (opts.netMissing ?? []).length === 0, stdout: netCheck(opts.netMissing), stderr: "" };
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
    it("a complete host has nothing missing and KVM usable", async () => {
        const report = await preflight(cfgOf(full), fakeHost({}));
        assert.deepEqual(report.missing, []);
        assertNote(report, /^KVM works .*: VMs use hardware virtualisation/);
    });

    it("a containerd cluster without a container needs no Docker: the cluster imports the image itself", async () => {
        const host = fakeHost({ failing: ["docker"] });
        const k8sOnly = { kubernetesEnabled: true, kubeContext: "minikube", containerEnabled: false };
        assert.deepEqual((await preflight(cfgOf({ ...k8sOnly, kubeContainerd: "/run/containerd/containerd.sock" }), host)).missing, []);
        assert.deepEqual((await preflight(cfgOf(k8sOnly), host)).missing.map((f) => f.item), ["docker daemon"]);
    });

    it("lists every missing item with how to get it, in one report", async () => {
        const host = fakeHost({ failing: ["nix", "docker"], netMissing: ["ip", "nft", "privileges", "/dev/net/tun"], contexts: ["kind-x"] });
        const report = await preflight(cfgOf({ ...full, useSudo: true }), host);
        const items = report.missing.map((f) => f.item);
        assert.deepEqual(items, ["nix", "docker daemon", "ip", "nft", "privileges", "/dev/net/tun", "kube context minikube"]);
        assert.ok(host.calls.includes("bash /srv/p/host/net.sh check --sudo"), host.calls.join("\n"));
        for (const f of report.missing) assert.ok(f.fix.length > 0, `${f.item} needs a fix`);
        assert.match(report.missing.at(-1)!.fix, /minikube start/);
    });

    it("the bridge's needs are net.sh check's: its missing items with their fixes; output it cannot read is a finding too", async () => {
        const report = await preflight(cfgOf({ bridgeEnabled: true }), fakeHost({ netMissing: ["privileges"] }));
        assert.deepEqual(report.missing, [{ item: "privileges", problem: "privileges is missing", fix: "get privileges" }]);
        const broken: HostProbe = { ...fakeHost({}), run: async () => ({ ok: false, stdout: "", stderr: "bash: host/net.sh: No such file or directory" }) };
        const [finding] = (await preflight(cfgOf({ bridgeEnabled: true }), broken)).missing;
        assert.equal(finding?.item, "net.sh check");
        assert.match(finding?.problem ?? "", /No such file or directory/);
    });

    it("net.sh check on this host, as a user who is not root, asks for root or pcp-eval:useSudo", async (t) => {
        requireTools(t, ["jq", "setpriv"]);
        if (!realHost.isRoot()) return t.skip("skipped: needs root to run net.sh check as another user");
        const projectDir = path.resolve(__dirname, "..");
        const asNobody: HostProbe = { ...realHost, run: (c, a, ms) => realHost.run("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", c, ...a], ms) };
        const cfg = { ...cfgOf({ bridgeEnabled: true }), projectDir };
        const privileges = (await preflight(cfg, asNobody)).missing.find((f) => f.item === "privileges");
        assert.ok(privileges, "privileges reported missing");
        assert.match(privileges.fix, /pcp-eval:useSudo true/);
        // The sudo rule offered is the narrow one (the installed helper), never ip, nft or sysctl.
        assert.match(privileges.fix, /ALL=\(root\) NOPASSWD: \S*net\.sh/);
        assert.doesNotMatch(privileges.fix, /for ip, nft and sysctl/);
    });

    it("checks only what the config needs", async () => {
        const host = fakeHost({ failing: ["docker", "kubectl", "nft"] });
        const report = await preflight(cfgOf({ vms: ["base"] }), host);
        assert.deepEqual(report.missing, []);
        assert.ok(!host.calls.some((c) => c.startsWith("docker") || c.startsWith("kubectl")));
    });

    it("a grafana VM needs the ssh client (its admin password is read over SSH); other VMs do not", async () => {
        const grafana = await preflight(cfgOf({ vms: ["grafana"] }), fakeHost({ failing: ["ssh"] }));
        assert.deepEqual(grafana.missing.map((f) => f.item), ["ssh"]);
        assert.match(grafana.missing[0]!.problem, /Grafana admin password of VM grafana /);
        assert.deepEqual((await preflight(cfgOf({ vms: ["base"] }), fakeHost({ failing: ["ssh"] }))).missing, []);
    });

    it("a /dev/kvm whose test boot hangs means TCG, noted but not blocking", async () => {
        const host = fakeHost({ kvmHangs: true });
        const report = await preflight(cfgOf({ vms: ["base"] }), host, "6.1.0-test", "/tmp/verdict");
        assert.deepEqual(report.missing, []);
        assert.ok(report.notes.some((n) => /did not finish in 10 s.*TCG/.test(n)), report.notes.join("\n"));
        assert.ok(host.calls.includes(`bash ${kvmProbeScript} --cache /tmp/verdict --kernel /run/booted-system/kernel`), "asks the one probe, with the host's own kernel");
    });

    it("boots the first readable host kernel, and falls back to the probe's empty-machine check without one", async () => {
        const withBoot = fakeHost({ missingPaths: ["/run/booted-system/kernel"] });
        assertNote(await preflight(cfgOf({ vms: ["base"] }), withBoot, "6.1.0-test"), /^KVM works \(a test boot of \/boot\/vmlinuz-6\.1\.0-test/);
        assert.ok(withBoot.calls.some((c) => c.endsWith("--kernel /boot/vmlinuz-6.1.0-test")));
        const noKernel = fakeHost({ missingPaths: ["/run/booted-system/kernel", "/boot/vmlinuz-6.1.0-test", "/boot/vmlinuz"] });
        const report = await preflight(cfgOf({ vms: ["base"] }), noKernel, "6.1.0-test");
        assertNote(report, /^KVM works \(an empty KVM machine ran/);
        assert.ok(noKernel.calls.some((c) => c.startsWith(`bash ${kvmProbeScript}`) && !c.includes("--kernel")));
        assert.ok(report.notes.some((n) => /set pcp-eval:vmAccel tcg if VMs hang/.test(n)));
    });

    it("preview runs no probe and writes nothing: it uses the verdict remembered for this boot, else plans TCG and says up will probe", async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe15-preflight-"));
        try {
            const cache = path.join(dir, "kvm-probe");
            const host = fakeHost({});
            const none = await preflight(cfgOf({ vms: ["base"] }), host, "6.1.0-test", cache, true);
            assert.ok(none.notes.some((n) => /preview runs no KVM test boot.*`pulumi up` probes KVM/.test(n)), none.notes.join("\n"));
            assert.deepEqual(host.calls.filter((c) => c.includes("kvm-probe")), [], "no probe boot in a preview");
            assert.deepEqual(fs.readdirSync(dir), [], "no file written by a preview");

            const boot = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
            fs.writeFileSync(cache, `${boot} yes a test boot ran to its end\n`);
            assertNote(await preflight(cfgOf({ vms: ["base"] }), host, "6.1.0-test", cache, true), /^KVM works \(a test boot ran to its end \(remembered for this boot\)\)/);
            fs.writeFileSync(cache, `another-boot yes a test boot ran to its end\n`);
            assert.equal(rememberedKvmVerdict(cache), undefined, "a verdict of another boot is not this boot's");
            assert.deepEqual(host.calls.filter((c) => c.includes("kvm-probe")), []);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("no /dev/kvm: TCG without asking the probe", async () => {
        const host = fakeHost({ missingPaths: ["/dev/kvm"] });
        assertNote(await preflight(cfgOf({ vms: ["base"] }), host, "6.1.0-test"), /^KVM is not usable \(\/dev\/kvm does not exist\); VMs run under TCG/);
        assert.ok(!host.calls.some((c) => c.includes("kvm-probe")));
    });

    it("the project cache root is PCP_EVAL_CACHE_DIR, else XDG_CACHE_HOME/pcp-eval, else ~/.cache/pcp-eval", async () => {
        assert.equal(projectCacheDir({ PCP_EVAL_CACHE_DIR: "/x/cold", XDG_CACHE_HOME: "/y" }), "/x/cold");
        assert.equal(projectCacheDir({ XDG_CACHE_HOME: "/y" }), "/y/pcp-eval");
        assert.equal(projectCacheDir({}), path.join(os.homedir(), ".cache", "pcp-eval"));
    });

    it("vmAccel kvm or tcg skips the probe and decides", async () => {
        for (const accel of ["kvm", "tcg"]) {
            const host = fakeHost({});
            const report = await preflight(cfgOf({ vms: ["base"], vmAccel: accel }), host, "6.1.0-test");
            assert.deepEqual(report.notes, [`VMs use ${accel.toUpperCase()} (pcp-eval:vmAccel)`]);
            assert.ok(!host.calls.some((c) => c.includes("-accel kvm")));
        }
    });

    it("skipPreflight checks nothing and says that VMs with vmAccel auto then run TCG unless a verdict is remembered", async () => {
        assert.deepEqual(skippedPreflight(cfgOf({})), { missing: [], notes: ["preflight skipped (pcp-eval:skipPreflight)"] });
        assertNote(skippedPreflight(cfgOf({ vms: ["base"] })), /no KVM test boot runs.*TCG unless a KVM verdict is remembered for this host boot/);
        assert.equal(skippedPreflight(cfgOf({ vms: ["base"], vmAccel: "tcg" })).notes.length, 1, "a forced accelerator needs no verdict");
    });

    it("runs independent probes side by side, and lists findings in a fixed order whatever finishes first", async () => {
        // Each probe answers after a delay that makes the later parts finish first.
        const base = fakeHost({ failing: ["nix", "docker"], netMissing: ["privileges"], contexts: [] });
        let inFlight = 0;
        let peak = 0;
        const delays: Record<string, number> = { nix: 60, docker: 40, bash: 20, kubectl: 1 };
        const slow: HostProbe = {
            ...base,
            async run(command, args, timeoutMs) {
                inFlight++;
                peak = Math.max(peak, inFlight);
                await new Promise((resolve) => setTimeout(resolve, delays[command] ?? 5));
                inFlight--;
                return base.run(command, args, timeoutMs);
            },
        };
        const report = await preflight(cfgOf(full), slow);
        assert.ok(peak >= 4, `nix, docker, the VM checks, net.sh check and kubectl overlap (peak ${peak} at once)`);
        assert.deepEqual(report.missing.map((f) => f.item), ["nix", "docker daemon", "privileges", "kube context minikube"]);
    });

    it("up fails with every finding in one message; preview only warns", async () => {
        const report = await preflight(cfgOf(full), fakeHost({ failing: ["nix", "docker"] }));
        const warnings: string[] = [];
        enforcePreflight(report, true, (m) => warnings.push(m));
        assert.ok(warnings.some((w) => /lacks 2 things/.test(w) && /preview goes on/.test(w)));
        assert.throws(() => enforcePreflight(report, false, () => undefined), /lacks 2 things[\s\S]*- nix:[\s\S]*- docker daemon:[\s\S]*Nothing was created/);
    });

});

describe("cachedPreflight", () => {
    const cfg = cfgOf(full);
    const withCache = async (body: (dir: string) => Promise<void>): Promise<void> => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe-preflight-"));
        try {
            await body(dir);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    };

    it("reuses a clean verdict within the TTL and checks again after it", async () => {
        await withCache(async (dir) => {
            const host = fakeHost({});
            let clock = 1_000_000;
            const run = () => cachedPreflight(cfg, () => preflight(cfg, host), dir, () => clock, "k1");
            const first = await run();
            assert.equal(first.cached, false);
            const checks = host.calls.length;
            assert.ok(checks > 0);
            clock += preflightCacheTtlMs - 1;
            const second = await run();
            assert.equal(second.cached, true);
            assert.equal(host.calls.length, checks, "a kept verdict runs no checks");
            assert.deepEqual(second.notes, first.notes);
            clock += 2;
            assert.equal((await run()).cached, false);
            assert.equal(host.calls.length, 2 * checks);
        });
    });

    it("never keeps a verdict with findings, so a fix shows on the next run", async () => {
        await withCache(async (dir) => {
            const host = fakeHost({ failing: ["nix"] });
            const run = () => cachedPreflight(cfg, () => preflight(cfg, host), dir, () => 5, "k2");
            assert.equal((await run()).missing.length, 1);
            const again = await run();
            assert.equal(again.cached, false);
            assert.equal(again.missing[0]?.item, "nix");
        });
    });

    it("a preview reads a kept verdict but writes none and boots no KVM probe", async () => {
        await withCache(async (dir) => {
            const vmCfg = cfgOf({ vms: ["base"] });
            const host = fakeHost({});
            const kvmCache = path.join(dir, "kvm-probe");
            const preview = () => cachedPreflight(vmCfg, () => preflight(vmCfg, host, "6.1.0-test", kvmCache, true), dir, () => 5, "k3", true);
            assert.equal((await preview()).cached, false);
            assert.deepEqual(fs.readdirSync(dir), [], "a preview leaves the cache dir empty");
            assert.deepEqual(host.calls.filter((c) => c.includes("kvm-probe")), [], "a preview calls no probe");
            // An up keeps its clean verdict; the next preview reuses it without checking anything.
            const up = await cachedPreflight(vmCfg, () => preflight(vmCfg, host, "6.1.0-test", kvmCache), dir, () => 5, "k3");
            assert.equal(up.cached, false);
            const checks = host.calls.length;
            assert.equal((await preview()).cached, true);
            assert.equal(host.calls.length, checks);
        });
    });

    it("the key follows the configuration the checks read", async () => {
        const read = () => "same";
        assert.equal(preflightCacheKey(cfg, read), preflightCacheKey(cfgOf(full), read));
        assert.notEqual(preflightCacheKey(cfg, read), preflightCacheKey(cfgOf({ ...full, useSudo: true }), read));
        assert.notEqual(preflightCacheKey(cfg, read), preflightCacheKey(cfg, (f) => (f.endsWith("net.sh") ? "changed" : "same")));
    });
});
