/**
 * The lifecycle's leftovers check on real things: a real process named in a
 * pid file, an out-link into /nix/store, and a bridge, a TAP device and an
 * nftables table recorded in the state dir, created with the real `ip` and
 * `nft` inside a network namespace this test owns (never in the machine's own).
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { type CommandRunner, findLeftovers, pidAlive, runCommand } from "../../verify/leftovers";
import { isRoot, requireTools } from "../helpers/tools";

const netns = "pe8-leftovers";

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

test("leftovers: a recorded bridge, TAP and nft table that still exist are found, inside the test's own netns", async (t) => {
    if (!requireTools(t, ["ip", "nft", ["root (to create a network namespace)", isRoot]])) return;
    const stateDir = mkdtempSync(path.join(os.tmpdir(), "pe8-state-"));
    const inNs: CommandRunner = (file, args) => runCommand("ip", ["netns", "exec", netns, file, ...args]);
    const sh = (...args: string[]): void => {
        execFileSync("ip", ["netns", "exec", netns, ...args], { stdio: ["ignore", "ignore", "pipe"] });
    };
    execFileSync("ip", ["netns", "add", netns]);
    try {
        sh("ip", "link", "add", "pe8-br0", "type", "bridge");
        sh("ip", "tuntap", "add", "dev", "pe8-tap0", "mode", "tap");
        sh("nft", "add", "table", "inet", "pe8_eval");
        // How a network record may look: nested, with a list of TAPs (as objects or names).
        writeFileSync(
            path.join(stateDir, "net.json"),
            JSON.stringify({ bridge: "pe8-br0", gatewayCidr: "192.0.2.1/24", nftTable: "pe8_eval", taps: [{ name: "pe8-tap0" }, "pe8-tap1"] }),
        );

        const found = await findLeftovers(stateDir, inNs);
        assert.deepEqual(found.problems, []);
        assert.equal(found.scanned.records, 1);
        assert.deepEqual(
            found.leftovers.map((l) => `${l.kind} ${l.what}`),
            ["bridge pe8-br0", "tap pe8-tap0", "nft-table inet pe8_eval"],
            "pe8-tap1 was recorded but does not exist: not a leftover",
        );
        for (const l of found.leftovers) assert.equal(l.recordedIn, path.join(stateDir, "net.json"));

        sh("ip", "link", "del", "pe8-tap0");
        sh("ip", "link", "del", "pe8-br0");
        sh("nft", "delete", "table", "inet", "pe8_eval");
        const clean = await findLeftovers(stateDir, inNs);
        assert.deepEqual(clean.leftovers, []);
        assert.deepEqual(clean.problems, []);

        const broken: CommandRunner = async () => ({ code: 1, stdout: "", stderr: "Operation not permitted" });
        const unknown = await findLeftovers(stateDir, broken);
        assert.ok(unknown.problems.some((p) => /nft list tables failed \(exit 1\): Operation not permitted/.test(p)), unknown.problems.join("; "));
        assert.ok(unknown.problems.some((p) => /ip link show dev pe8-br0 failed/.test(p)));
    } finally {
        execFileSync("ip", ["netns", "del", netns]);
        rmSync(stateDir, { recursive: true, force: true });
    }
});
