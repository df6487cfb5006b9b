/**
 * The lifecycle's leftovers check on real things: a real process named in a
 * pid file, an out-link into /nix/store, and a bridge, a TAP device and an
 * nftables table recorded in the state dir by host/net.sh itself, made with
 * the real `ip` and `nft` inside a network namespace this test owns (never in
 * the machine's own).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { type CommandRunner, findLeftovers, pidAlive, runCommand } from "../../verify/leftovers";
import { constants } from "../../components/constants";
import { Netns } from "../helpers/netns";
import { isRoot, requireTools } from "../helpers/tools";

const NET_SH = path.resolve(__dirname, "..", "..", "host", "net.sh");

function startSleeper(): { pid: number; stop: () => Promise<void> } {
    const child = spawn("sleep", ["300"], { stdio: "ignore" });
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    assert.ok(child.pid);
    return {
        pid: child.pid,
        stop: async () => {
            if (child.exitCode === null && child.signalCode === null) {
                child.kill("SIGTERM");
                await exited;
            }
        },
    };
}

async function deadPid(): Promise<number> {
    const child = spawn("true", [], { stdio: "ignore" });
    await new Promise<void>((r) => child.once("exit", () => r()));
    assert.ok(child.pid);
    return child.pid;
}

test("leftovers: a live process from a pid file and an out-link are found; a dead pid is not", async (t) => {
    if (!requireTools(t, ["sleep"])) return;
    const stateDir = mkdtempSync(path.join(os.tmpdir(), "pe8-state-"));
    const sleeper = startSleeper();
    try {
        mkdirSync(path.join(stateDir, "vms", "eval"), { recursive: true });
        writeFileSync(path.join(stateDir, "vms", "eval", "vm.pid"), `${sleeper.pid}\n`);
        writeFileSync(path.join(stateDir, "vms", "old.pid"), `${await deadPid()}\n`);
        symlinkSync("/nix/store/00000000000000000000000000000000-pe8-runner", path.join(stateDir, "runner-eval"));
        symlinkSync("/etc/hostname", path.join(stateDir, "not-an-out-link"));

        const found = await findLeftovers(stateDir);
        assert.equal(found.stateDirExists, true);
        assert.deepEqual(found.scanned, { pidFiles: 2, outLinks: 1, records: 0 });
        assert.deepEqual(
            found.leftovers.map((l) => `${l.kind} ${l.what}`).sort(),
            [`out-link ${path.join(stateDir, "runner-eval")}`, `process ${sleeper.pid}`].sort(),
        );
        const proc = found.leftovers.find((l) => l.kind === "process");
        assert.equal(proc?.detail, "sleep 300");
        assert.equal(proc?.recordedIn, path.join(stateDir, "vms", "eval", "vm.pid"));

        await sleeper.stop();
        unlinkSync(path.join(stateDir, "runner-eval"));
        const clean = await findLeftovers(stateDir);
        assert.deepEqual(clean.leftovers, []);
        assert.deepEqual(clean.problems, []);

        const missing = await findLeftovers(path.join(stateDir, "nonexistent"));
        assert.equal(missing.stateDirExists, false);
        assert.deepEqual(missing.leftovers, []);
    } finally {
        await sleeper.stop();
        rmSync(stateDir, { recursive: true, force: true });
    }
    assert.equal(pidAlive(sleeper.pid), false);
});

test("leftovers: the bridge, TAPs and nft table in a net.json written by host/net.sh itself are found while they exist, inside the test's own netns", async (t) => {
    if (!requireTools(t, ["ip", "nft", "jq", "flock", "sysctl", ["root (to create a network namespace)", isRoot]])) return;
    const ns = Netns.create("pe8");
    const stateDir = mkdtempSync(path.join(os.tmpdir(), "pe8-state-"));
    const netDir = path.join(stateDir, "net");
    const inNs: CommandRunner = (file, args) => runCommand("ip", ["netns", "exec", ns.name, file, ...args]);
    const taps = [`${constants.network.tapPrefix}0`, `${constants.network.tapPrefix}1`];
    try {
        // What TapBridge runs: the bridge, then one tap-up per TAP.
        ns.runOk("bash", [NET_SH, "bridge-up", "--state-dir", netDir]);
        for (const tap of taps) ns.runOk("bash", [NET_SH, "tap-up", "--state-dir", netDir, "--tap", tap, "--owner", "nobody"]);
        const found = await findLeftovers(stateDir, inNs);
        assert.deepEqual(found.problems, []);
        assert.equal(found.scanned.records, 1);
        assert.deepEqual(
            found.leftovers.map((l) => `${l.kind} ${l.what}`).sort(),
            [`bridge ${constants.network.bridge}`, ...taps.map((n) => `tap ${n}`), `nft-table ip ${constants.network.nftTable}`].sort(),
        );
        for (const l of found.leftovers) assert.equal(l.recordedIn, path.join(netDir, "net.json"));

        // Gone behind net.sh's back while still recorded: a TAP and the table are no longer leftovers.
        ns.ip(["link", "del", "dev", taps[1]!]);
        ns.runOk("nft", ["delete", "table", "ip", constants.network.nftTable]);
        const partly = await findLeftovers(stateDir, inNs);
        assert.deepEqual(partly.leftovers.map((l) => `${l.kind} ${l.what}`).sort(), [`bridge ${constants.network.bridge}`, `tap ${taps[0]}`].sort());

        const broken: CommandRunner = async () => ({ code: 1, stdout: "", stderr: "Operation not permitted" });
        const unknown = await findLeftovers(stateDir, broken);
        assert.ok(unknown.problems.some((p) => /nft list tables failed \(exit 1\): Operation not permitted/.test(p)), unknown.problems.join("; "));
        assert.ok(unknown.problems.some((p) => new RegExp(`ip link show dev ${constants.network.bridge} failed`).test(p)));

        ns.runOk("bash", [NET_SH, "bridge-down", "--state-dir", netDir]);
        const clean = await findLeftovers(stateDir, inNs);
        assert.deepEqual(clean.leftovers, []);
        assert.deepEqual(clean.problems, []);
    } finally {
        ns.destroy();
        rmSync(stateDir, { recursive: true, force: true });
    }
});
