import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseConfig, PcpEvalConfig } from "./config";
import { enforcePreflight, HostProbe, preflight, realHost } from "./preflight";

function cfgOf(raw: Record<string, unknown>): PcpEvalConfig {
    return parseConfig(Object.fromEntries(Object.entries(raw).map(([k, v]) => [`pcp-eval:${k}`, typeof v === "string" ? v : JSON.stringify(v)])), "unit", "/srv/p");
}

/** A host where the named commands fail and everything else succeeds. */
function fakeHost(opts: { failing?: string[]; root?: boolean; missingPaths?: string[]; contexts?: string[] }): HostProbe & { calls: string[] } {
    const calls: string[] = [];
    return {
        calls,
        run(command, args) {
            const line = [command, ...args].join(" ");
            calls.push(line);
            const failing = (opts.failing ?? []).some((f) => line.startsWith(f) || (command === "sh" && args[1] === `command -v ${f}`));
            if (failing) return { ok: false, stdout: "", stderr: `${command}: not found` };
            if (command === "kubectl") return { ok: true, stdout: (opts.contexts ?? ["minikube"]).join("\n") + "\n", stderr: "" };
            if (line.includes("-accel kvm")) return { ok: true, stdout: '{"return": {"status": "running", "running": true}}', stderr: "" };
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

    it("a /dev/kvm that hangs QEMU means TCG, noted but not blocking", () => {
        const host = fakeHost({ failing: ["sh -c (printf"] });
        const report = preflight(cfgOf({ vms: ["base"] }), host);
        assert.equal(report.kvmUsable, false);
        assert.deepEqual(report.missing, []);
        assert.ok(report.notes.some((n) => /TCG/.test(n)));
    });

    it("up fails with every finding in one message; preview only warns", () => {
        const report = preflight(cfgOf(full), fakeHost({ failing: ["nix", "docker"] }));
        const warnings: string[] = [];
        enforcePreflight(report, true, (m) => warnings.push(m));
        assert.ok(warnings.some((w) => /lacks 2 things/.test(w) && /preview goes on/.test(w)));
        assert.throws(() => enforcePreflight(report, false, () => undefined), /lacks 2 things[\s\S]*- nix:[\s\S]*- docker daemon:[\s\S]*Nothing was created/);
    });

    it("runs against this real host and returns a well-formed report", () => {
        const report = preflight(cfgOf({ vms: ["base"] }), realHost);
        assert.equal(typeof report.kvmUsable, "boolean");
        assert.ok(report.notes.length >= 1);
        for (const f of report.missing) assert.ok(f.item && f.problem && f.fix);
    });
});
