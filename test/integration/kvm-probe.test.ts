/**
 * host/kvm-probe.sh, the one KVM probe (preflight and the fixture VM runners
 * ask it), with a stand-in QEMU on PATH that hangs or powers off, and once
 * against this real host.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import { kvmProbeScript, preflight, realHost } from "../../components/preflight";
import { parseConfig } from "../../components/config";
import { buildFixture, fixtureDir } from "../fixtures/vm/fixture";
import { run } from "../helpers/run";
import { requireTools } from "../helpers/tools";

interface Verdict { usable: boolean; why: string; cached: boolean; seconds: number; cacheFile: string }

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe-kvm-probe-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A PATH whose qemu-system-x86_64 logs each start to `calls` and then hangs or exits 0. */
function standIn(name: string, behaviour: "hang" | "poweroff" | "running"): { env: NodeJS.ProcessEnv; calls: string; device: string; cache: string } {
    const bin = path.join(dir, name, "bin");
    fs.mkdirSync(bin, { recursive: true });
    const calls = path.join(dir, name, "calls");
    fs.writeFileSync(path.join(bin, "qemu-system-x86_64"),
        `#!/usr/bin/env bash\necho "$*" >>${JSON.stringify(calls)}\n${{ hang: "exec sleep 600", poweroff: "exit 0", running: `echo '{"return": {"status": "running", "running": true}}'` }[behaviour]}\n`, { mode: 0o755 });
    const device = path.join(dir, name, "kvm");
    fs.writeFileSync(device, "");
    const kernel = path.join(dir, name, "vmlinuz");
    fs.writeFileSync(kernel, "");
    return { env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}` }, calls, device, cache: path.join(dir, name, "cache", "kvm-probe") };
}

async function probe(s: ReturnType<typeof standIn>, extra: string[] = []): Promise<Verdict> {
    const r = await run("bash", [kvmProbeScript, "--device", s.device, "--cache", s.cache, "--timeout", "2", ...extra], { env: s.env, timeoutMs: 30000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Verdict;
}

const callCount = (s: ReturnType<typeof standIn>) => (fs.existsSync(s.calls) ? fs.readFileSync(s.calls, "utf8").trim().split("\n").length : 0);

describe("host/kvm-probe.sh", () => {
    it("a guest that hangs under KVM is a written 'no' for this boot, probed once even by concurrent callers", async (t) => {
        if (!requireTools(t, ["jq", "flock", "timeout"])) return;
        const s = standIn("hang", "hang");
        const kernel = path.join(dir, "hang", "vmlinuz");
        const [a, b] = await Promise.all([probe(s, ["--kernel", kernel]), probe(s, ["--kernel", kernel])]);
        assert.equal(callCount(s), 1, "the second caller waited for the first one's verdict");
        for (const v of [a, b]) assert.equal(v.usable, false);
        assert.match([a, b].find((v) => !v.cached)!.why, /did not finish in 2 s/);
        assert.ok([a, b].some((v) => v.cached), "one of them was served from the cache");
        const bootId = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
        assert.match(fs.readFileSync(s.cache, "utf8"), new RegExp(`^${bootId} no `));
        const again = await probe(s);
        assert.deepEqual([again.usable, again.cached, callCount(s)], [false, true, 1], "a later caller without a kernel gets the written verdict");
    });

    it("a verdict of another boot is probed again; a guest that powers off means KVM", async (t) => {
        if (!requireTools(t, ["jq", "flock", "timeout"])) return;
        const s = standIn("works", "poweroff");
        fs.mkdirSync(path.dirname(s.cache), { recursive: true });
        fs.writeFileSync(s.cache, "00000000-old-boot no an old verdict\n");
        const v = await probe(s, ["--kernel", path.join(dir, "works", "vmlinuz")]);
        assert.deepEqual([v.usable, v.cached, callCount(s)], [true, false, 1]);
    });

    it("an empty machine's weak 'yes' is not written, so a later kernel boot still decides", async (t) => {
        if (!requireTools(t, ["jq", "flock", "timeout"])) return;
        const s = standIn("weak", "running");
        const v = await probe(s);
        assert.deepEqual([v.usable, v.cached, fs.existsSync(s.cache)], [true, false, false]);
        assert.match(v.why, /empty KVM machine ran/);
    });

    it("no KVM device: 'no' at once, nothing probed or written", async (t) => {
        if (!requireTools(t, ["jq"])) return;
        const s = standIn("none", "poweroff");
        fs.rmSync(s.device);
        const v = await probe(s);
        assert.deepEqual([v.usable, callCount(s), fs.existsSync(s.cache)], [false, 0, false]);
        assert.match(v.why, /does not exist/);
    });

    it("bad input names the option and the fix", async () => {
        const r = await run("bash", [kvmProbeScript, "--timeout", "soon"]);
        assert.equal(r.code, 2);
        assert.match(r.stderr, /--timeout needs whole seconds/);
    });

    it("this real host: the fixture kernel under KVM decides, and preflight reports the same remembered verdict", async (t) => {
        if (!requireTools(t, ["qemu-system-x86_64", "jq", "flock", "timeout", ["/dev/kvm exists", () => fs.existsSync("/dev/kvm")]])) return;
        const fixture = await buildFixture();
        const cache = path.join(dir, "real", "kvm-probe");
        const r = await run("bash", [kvmProbeScript, "--kernel", fixture.kernel, "--initrd", fixture.initrd, "--append", "console=ttyS0 panic=-1 fixture.probe=1", "--cache", cache], { timeoutMs: 60000 });
        assert.equal(r.code, 0, r.stderr);
        const verdict = JSON.parse(r.stdout) as Verdict;
        const cfg = parseConfig({ "pcp-eval:vms": JSON.stringify(["base"]) }, "unit", "/srv/p");
        const report = await preflight(cfg, realHost, os.release(), cache);
        const note = report.notes.find((n) => /remembered for this boot/.test(n));
        assert.ok(note, report.notes.join("\n"));
        assert.match(note, verdict.usable ? /^KVM works/ : /^KVM is not usable/);
    });

    it("make-runner.sh decides auto from the verdict before any start; the runner it writes never probes", async (t) => {
        if (!requireTools(t, ["qemu-system-x86_64", "jq", "flock", "timeout", "socat"])) return;
        const bootId = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
        for (const [verdict, accel] of [["no", "tcg"], ["yes", "kvm"]] as const) {
            const cache = path.join(dir, `runner-${verdict}`, "kvm-probe");
            fs.mkdirSync(path.dirname(cache), { recursive: true });
            fs.writeFileSync(cache, `${bootId} ${verdict} written by the test\n`);
            const out = path.join(dir, `runner-${verdict}`, "r");
            const r = await run("bash", [path.join(fixtureDir, "make-runner.sh"), "--out", out, "--name", "probe-t", "--serial-port", "31001", "--virtio-port", "31002", "--kvm-cache", cache], { timeoutMs: 600_000 });
            assert.equal(r.code, 0, r.stderr);
            assert.equal((JSON.parse(r.stdout) as { accel: string }).accel, accel);
            const script = fs.readFileSync(path.join(out, "bin", "microvm-run"), "utf8");
            assert.match(script, new RegExp(`default_accel=${accel} `));
            assert.doesNotMatch(script, /fixture\.probe|boot_id|flock/, "no probe inside the runner's start");
        }
    });
});
