/**
 * host/vm.sh against a real QEMU (TCG here; KVM only where a probe boot
 * works) running the fixture VM of test/fixtures/vm: a Debian cloud kernel and
 * a busybox initramfs serving pmcd-like and HTTP ports, talking on ttyS0 and
 * hvc0, obeying (or ignoring) the ACPI power button.
 *
 * Ports are chosen free at test time from 20000-32767, never the production
 * ones. Every VM lives under a temporary state dir; the last test checks that
 * nothing the suite started is left running.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import type { TestContext } from "node:test";
import {
    type MicroVmProcessInputs,
    type MicroVmProcessState,
    type VmStartResult,
    type VmStatus,
    type VmStopResult,
} from "../../components/microVmProcess";
import {
    buildFixture,
    standInRunner,
    consoleExchange,
    freePorts,
    makeRunner,
    parseJson,
    processAlive,
    processesUnder,
    readGreeting,
    sessionOf,
    vmScript,
    vmSh,
    type Runner,
} from "../fixtures/vm/fixture";
import { startProviderPlugin, type ProviderPlugin } from "../helpers/providerPlugin";
import { firstUnmet, requireTools } from "../helpers/tools";
import { constants } from "../../components/constants";

const needs: Array<string | [string, () => boolean]> = [
    "qemu-system-x86_64",
    ["/bin/busybox (busybox-static) is missing", () => fs.existsSync("/bin/busybox")],
    "jq",
    "curl",
    "ss",
    "setsid",
    "flock",
    "socat",
    "timeout",
    "dpkg-deb",
    "apt-get",
];
const guest = constants.ports;
const TEST_TIMEOUT = 240_000;

let root = "";
let stateDir = "";
const startedPids = new Set<number>();
/** The provider plugin, started on first use (one per file). */
let plugin: ProviderPlugin | undefined;

function gate(t: TestContext): boolean {
    return requireTools(t, needs);
}

async function start(name: string, r: Runner, args: string[]): Promise<VmStartResult> {
    const res = await vmSh(["start", "--name", name, "--state-dir", stateDir, "--runner", r.runner, ...args]);
    const m = /started pid (\d+)/.exec(res.stderr);
    if (m) startedPids.add(Number(m[1]));
    const out = parseJson<VmStartResult>(res);
    startedPids.add(out.pid);
    return out;
}

async function status(name: string): Promise<VmStatus> {
    return parseJson<VmStatus>(await vmSh(["status", "--name", name, "--state-dir", stateDir]));
}

async function stop(name: string, extra: string[] = []): Promise<VmStopResult> {
    return parseJson<VmStopResult>(await vmSh(["stop", "--name", name, "--state-dir", stateDir, ...extra]));
}

async function httpGet(url: string): Promise<{ status: number; body: string }> {
    const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    return { status: res.status, body: await res.text() };
}

/**
 * The text of `file` once something has written it, polled until `deadlineMs`
 * (generous: a loaded machine starts a process slowly); fails naming the file.
 * Written by printf in one write, so a non-empty file is a whole one.
 */
async function fileWritten(file: string, deadlineMs: number): Promise<string> {
    const end = Date.now() + deadlineMs;
    for (;;) {
        try {
            const text = fs.readFileSync(file, "utf8");
            if (text !== "") return text;
        } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        }
        if (Date.now() >= end) assert.fail(`${file} was not written within ${deadlineMs / 1000} s`);
        await new Promise((r) => setTimeout(r, 50));
    }
}

function portFreeNow(port: number): Promise<boolean> {
    return new Promise((resolve) => {
        const srv = net.createServer();
        srv.once("error", () => resolve(false));
        srv.listen({ port, host: "127.0.0.1", exclusive: true }, () => srv.close(() => resolve(true)));
    });
}

describe("vm.sh with a real QEMU fixture VM", { timeout: 20 * 60_000 }, () => {
    before(async () => {
        // The directories always (tests with stand-in runners need no QEMU); the fixture VM only where it can run.
        root = fs.mkdtempSync(path.join(os.tmpdir(), "pe5-vm-"));
        stateDir = path.join(root, "state");
        if (firstUnmet(needs) !== undefined) return;
        await buildFixture();
    });

    after(async () => {
        await plugin?.close();
        if (!root) return;
        // Stop whatever a failed test left behind, by the pids this suite started.
        const left = fs.existsSync(stateDir) ? fs.readdirSync(stateDir) : [];
        for (const name of left) {
            await vmSh(["stop", "--name", name, "--state-dir", stateDir, "--shutdown-timeout", "1", "--exit-timeout", "2"]);
        }
        for (const pid of startedPids) {
            if (processAlive(pid)) process.kill(pid, "SIGKILL");
        }
        fs.rmSync(root, { recursive: true, force: true });
    });

    // Shared by the first tests: one VM serving pmcd-like and HTTP ports.
    let main: { name: string; runner: Runner; pmcd: number; pmproxy: number; serial: number; virtio: number; pid: number } | undefined;

    it("start returns once serial, virtio and the services answer through hostfwd on 127.0.0.1", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        const [pmcd, pmproxy, serial, virtio] = await freePorts(4);
        const runner = await makeRunner({
            out: path.join(root, "runner-main"),
            name: "pe5-main",
            serialPort: serial,
            virtioPort: virtio,
            forwards: [
                { host: pmcd, guest: guest.pmcd },
                { host: pmproxy, guest: guest.pmproxy },
            ],
            tcpServices: [guest.pmcd],
            httpServices: [guest.pmproxy],
        });
        const out = await start("main", runner, [
            ...[pmcd, pmproxy, serial, virtio].flatMap((p) => ["--port", `${p}`]),
            "--probe", `serial=console:127.0.0.1:${serial}`,
            "--probe", `virtio=console:127.0.0.1:${virtio}`,
            "--probe", `services=tcp:127.0.0.1:${pmcd}`,
            "--probe", `services=http://127.0.0.1:${pmproxy}/pmapi/context`,
        ]);
        main = { name: "main", runner, pmcd, pmproxy, serial, virtio, pid: out.pid };
        assert.equal(out.name, "main");
        assert.deepEqual(Object.keys(out.phases), ["process", "serial", "virtio", "services"]);
        assert.deepEqual(out.ports, [pmcd, pmproxy, serial, virtio]);
        assert.ok(processAlive(out.pid));

        // Detached: its own session, stdin /dev/null, stdout and stderr to the VM log.
        assert.equal(sessionOf(out.pid), out.pid);
        assert.equal(fs.readlinkSync(`/proc/${out.pid}/fd/0`), "/dev/null");
        assert.equal(fs.readlinkSync(`/proc/${out.pid}/fd/1`), out.log);
        assert.equal(fs.readlinkSync(`/proc/${out.pid}/fd/2`), out.log);
        assert.equal(fs.readFileSync(path.join(out.stateDir, "vm.pid"), "utf8").trim(), `${out.pid}`);

        // The services answer through QEMU's hostfwd on 127.0.0.1.
        const ctx = await httpGet(`http://127.0.0.1:${pmproxy}/pmapi/context`);
        assert.equal(ctx.status, 200);
        assert.equal((JSON.parse(ctx.body) as { source: string }).source, "pcp-eval-fixture");
        assert.match(await readGreeting(pmcd), /pmcd-like greeting/);
    });

    it("both console ports answer: serial ttyS0 and virtio hvc0", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        assert.ok(main, "needs the VM of the first test");
        assert.match(await consoleExchange(main.serial, "hello-serial", "ttyS0: hello-serial"), /pcp-eval-fixture ttyS0/);
        assert.match(await consoleExchange(main.virtio, "hello-virtio", "hvc0: hello-virtio"), /pcp-eval-fixture hvc0/);
    });

    it("status and list report the running VM with pid, uptime and ports", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        assert.ok(main);
        const st = await status("main");
        assert.equal(st.running, true);
        assert.equal(st.pid, main.pid);
        assert.ok(typeof st.uptimeSeconds === "number" && st.uptimeSeconds >= 0);
        assert.deepEqual(st.ports, [main.pmcd, main.pmproxy, main.serial, main.virtio]);
        const list = parseJson<VmStatus[]>(await vmSh(["list", "--state-dir", stateDir]));
        assert.deepEqual(
            list.filter((s) => s.running).map((s) => [s.name, s.pid]),
            [["main", main.pid]],
        );
        const unknown = await status("never-started");
        assert.deepEqual(unknown, { name: "never-started", running: false });
    });

    it("a second start of a running VM is refused and leaves it running", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        assert.ok(main);
        const res = await vmSh(["start", "--name", "main", "--state-dir", stateDir, "--runner", main.runner.runner, "--port", `${main.pmcd}`]);
        assert.equal(res.code, 1);
        assert.match(res.stderr, new RegExp(`VM 'main' already runs \\(pid ${main.pid}`));
        assert.equal(res.stdout, "");
        assert.ok(processAlive(main.pid));
        assert.equal((await status("main")).pid, main.pid);
    });

    it("a port held by something else (forwarded or console) is refused before QEMU starts", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        const [fwd, serial, virtio, other] = await freePorts(4);
        const runner = await makeRunner({
            out: path.join(root, "runner-taken"),
            name: "pe5-taken",
            serialPort: serial,
            virtioPort: virtio,
            forwards: [{ host: fwd, guest: guest.pmcd }],
            tcpServices: [guest.pmcd],
        });
        const holder = net.createServer();
        for (const taken of [fwd, serial]) {
            await new Promise<void>((resolve) => holder.listen({ port: taken, host: "127.0.0.1" }, resolve));
            try {
                const res = await vmSh([
                    "start", "--name", "taken", "--state-dir", stateDir, "--runner", runner.runner,
                    ...[fwd, serial, virtio, other].flatMap((p) => ["--port", `${p}`]),
                ]);
                assert.equal(res.code, 1, res.stderr);
                assert.match(res.stderr, new RegExp(`port ${taken} is held by pid ${process.pid} \\(node`));
                assert.equal(fs.existsSync(path.join(stateDir, "taken", "vm.pid")), false);
                assert.equal((await status("taken")).running, false);
                // the other ports were never bound by a VM
                for (const p of [fwd, serial, virtio, other].filter((p) => p !== taken)) assert.ok(await portFreeNow(p));
            } finally {
                await new Promise<void>((resolve) => holder.close(() => resolve()));
            }
        }
    });

    it("graceful stop: the runner's shutdown command powers the guest off; pid file removed; stop again is fine", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        assert.ok(main);
        const res = await stop("main");
        const { stopMs, ...rest } = res;
        assert.deepEqual(rest, { name: "main", stopped: true, how: "graceful" });
        assert.ok(Number.isInteger(stopMs) && stopMs > 0, `stopMs is the shutdown's duration, got ${stopMs}`);
        assert.equal(processAlive(main.pid), false);
        assert.equal(fs.existsSync(path.join(stateDir, "main", "vm.pid")), false);
        assert.match(fs.readFileSync(path.join(stateDir, "main", "serial.log"), "latin1"), /power button: powering off/);
        for (const p of [main.pmcd, main.pmproxy, main.serial, main.virtio]) assert.ok(await portFreeNow(p), `port ${p} free`);
        assert.deepEqual(await stop("main"), { name: "main", stopped: true, how: "not-running", stopMs: 0 });
        assert.equal((await status("main")).running, false);
    });

    it("without a shutdown command, stop powers the guest off through QMP", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        const [http, serial, virtio] = await freePorts(3);
        const runner = await makeRunner({
            out: path.join(root, "runner-qmp"),
            name: "pe5-qmp",
            serialPort: serial,
            virtioPort: virtio,
            forwards: [{ host: http, guest: guest.pmproxy }],
            httpServices: [guest.pmproxy],
            shutdownCommand: false,
        });
        assert.equal(runner.shutdown, null);
        const out = await start("qmp", runner, ["--port", `${http}`, "--probe", `services=http://127.0.0.1:${http}/pmapi/context`]);
        const res = await vmSh(["stop", "--name", "qmp", "--state-dir", stateDir]);
        const { stopMs: _ms, ...stopped } = parseJson<VmStopResult>(res);
        assert.deepEqual(stopped, { name: "qmp", stopped: true, how: "graceful" });
        assert.match(res.stderr, /ACPI powerdown through QMP/);
        assert.equal(processAlive(out.pid), false);
    });

    it("a VM whose guest ignores shutdown gets SIGTERM after the shutdown timeout", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        const [pmcd, serial, virtio] = await freePorts(3);
        const runner = await makeRunner({
            out: path.join(root, "runner-stubborn"),
            name: "pe5-stubborn",
            serialPort: serial,
            virtioPort: virtio,
            forwards: [{ host: pmcd, guest: guest.pmcd }],
            tcpServices: [guest.pmcd],
            ignoreShutdown: true,
        });
        const out = await start("stubborn", runner, ["--port", `${pmcd}`, "--probe", `services=tcp:127.0.0.1:${pmcd}`]);
        const res = await stop("stubborn", ["--shutdown-timeout", "2", "--exit-timeout", "10"]);
        assert.equal(res.how, "term");
        assert.equal(processAlive(out.pid), false);
        // The guest saw the power button and ignored it: graceful really was tried first.
        assert.match(fs.readFileSync(path.join(out.stateDir, "serial.log"), "latin1"), /power button ignored/);
    });

    it("a runner that ignores SIGTERM is killed after the exit timeout, with its whole session", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        const [serial, virtio] = await freePorts(2);
        const runner = await makeRunner({
            out: path.join(root, "runner-deaf"),
            name: "pe5-deaf",
            serialPort: serial,
            virtioPort: virtio,
            ignoreShutdown: true,
            ignoreTerm: true,
        });
        const out = await start("deaf", runner, ["--port", `${serial}`, "--port", `${virtio}`]);
        const res = await stop("deaf", ["--shutdown-timeout", "1", "--exit-timeout", "1"]);
        assert.equal(res.how, "kill");
        assert.equal(processAlive(out.pid), false);
        assert.deepEqual(processesUnder(out.stateDir), []);
    });

    it("after kill -9, status reports the VM dead, and start recovers from the stale pid file", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        const [serial, virtio] = await freePorts(2);
        const runner = await makeRunner({ out: path.join(root, "runner-victim"), name: "pe5-victim", serialPort: serial, virtioPort: virtio });
        const out = await start("victim", runner, ["--port", `${serial}`, "--port", `${virtio}`]);
        assert.equal((await status("victim")).running, true);
        process.kill(out.pid, "SIGKILL");
        for (let i = 0; i < 100 && processAlive(out.pid); i++) await new Promise((r) => setTimeout(r, 50));
        const st = await status("victim");
        assert.equal(st.running, false);
        assert.equal(st.stale, true);
        const list = parseJson<VmStatus[]>(await vmSh(["list", "--state-dir", stateDir]));
        assert.equal(list.find((s) => s.name === "victim")?.running, false);

        const again = await start("victim", runner, ["--port", `${serial}`, "--port", `${virtio}`]);
        assert.notEqual(again.pid, out.pid);
        assert.equal((await status("victim")).pid, again.pid);
        assert.equal((await stop("victim", ["--shutdown-timeout", "1", "--exit-timeout", "5"])).stopped, true);
    });

    it("a runner left without a record by an interrupted start is stopped by the next start; stop --purge leaves no directory", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        const [serial, virtio] = await freePorts(2);
        const runner = await makeRunner({ out: path.join(root, "runner-orphan"), name: "pe5-orphan", serialPort: serial, virtioPort: virtio });
        const first = await start("orphan", runner, ["--port", `${serial}`, "--port", `${virtio}`]);
        // What a vm.sh killed between launching the runner and recording it leaves: the runner, no pid file.
        for (const f of ["vm.pid", "vm.json"]) fs.rmSync(path.join(first.stateDir, f));
        assert.equal((await status("orphan")).running, false);
        assert.ok(processAlive(first.pid));

        const again = await start("orphan", runner, ["--port", `${serial}`, "--port", `${virtio}`]);
        assert.notEqual(again.pid, first.pid);
        assert.ok(!processAlive(first.pid), "the orphaned runner was stopped");
        assert.equal((await status("orphan")).pid, again.pid);
        // --purge (what destroy uses) also takes the VM's logs and directory.
        assert.equal((await stop("orphan", ["--shutdown-timeout", "1", "--exit-timeout", "5", "--purge"])).stopped, true);
        assert.equal(fs.existsSync(again.stateDir), false, "the VM directory is gone after stop --purge");
    });

    it("a readiness timeout names the phase, the last probe error and the log tails, and stops the VM", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        const [pmcd, serial, virtio] = await freePorts(3);
        const runner = await makeRunner({
            out: path.join(root, "runner-slow"),
            name: "pe5-slow",
            serialPort: serial,
            virtioPort: virtio,
            forwards: [{ host: pmcd, guest: guest.pmcd }],
            tcpServices: [guest.pmcd],
        });
        const res = await vmSh([
            "start", "--name", "slow", "--state-dir", stateDir, "--runner", runner.runner, "--port", `${pmcd}`,
            "--probe", `serial=console:127.0.0.1:${serial}`,
            // the guest serves pmcd-like TCP on this port, never HTTP
            "--probe", `metrics=http://127.0.0.1:${pmcd}/pmapi/fetch`, "--timeout", "metrics=2",
        ]);
        const pid = Number(/started pid (\d+)/.exec(res.stderr)?.[1]);
        startedPids.add(pid);
        assert.equal(res.code, 1);
        assert.equal(res.stdout, "");
        assert.match(res.stderr, /failed in phase 'metrics': timed out after 2\.0 s; last probe error: http:\/\/127\.0\.0\.1:\d+\/pmapi\/fetch: curl: /);
        assert.match(res.stderr, /--- VM log: last 40 lines of .*vm\.log ---\n[\s\S]*microvm-run: pe5-slow/);
        assert.match(res.stderr, /--- serial console: last 40 lines of .*serial\.log ---\n[\s\S]*pcp-eval-fixture: /);
        assert.match(res.stderr, /the VM was stopped \((term|kill)\)/);
        assert.equal(processAlive(pid), false);
        assert.equal((await status("slow")).running, false);
    });

    it("a readiness timeout of a guest silent under KVM hints at TCG; under TCG, or once the guest spoke, it does not", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        // Stand-ins for QEMU: a process whose command line names the
        // accelerator as QEMU's does, after writing what the guest printed on
        // its serial console. (On this machine a real guest under KVM hangs
        // right after the boot stub's "Probing EDD" line: the first case.)
        const cases = [
            { accel: "kvm", serial: "Probing EDD (edd=off to disable)... ok\r\n", hint: true },
            { accel: "tcg", serial: "", hint: false },
            { accel: "kvm", serial: "Probing EDD (edd=off to disable)... ok\r\n<<< NixOS Stage 1 >>>\r\n", hint: false },
        ];
        for (const [i, c] of cases.entries()) {
            const runner = path.join(root, `runner-silent-${i}`);
            fs.mkdirSync(path.join(runner, "bin"), { recursive: true });
            fs.writeFileSync(path.join(runner, "serial.txt"), c.serial);
            fs.writeFileSync(
                path.join(runner, "bin", "microvm-run"),
                [
                    "#!/usr/bin/env bash",
                    'cp "$(dirname "$0")/../serial.txt" serial.log',
                    `exec -a qemu-system-x86_64 bash -c 'trap "kill \\$! 2>/dev/null; exit 0" TERM; sleep 600 & wait' stand-in -M pc,accel=${c.accel}`,
                    "",
                ].join("\n"),
                { mode: 0o755 },
            );
            const [serial] = await freePorts(1);
            const res = await vmSh([
                "start", "--name", `silent-${i}`, "--state-dir", stateDir, "--runner", runner,
                "--probe", `serial=console:127.0.0.1:${serial}`, "--timeout", "serial=1",
            ]);
            const pid = Number(/started pid (\d+)/.exec(res.stderr)?.[1]);
            startedPids.add(pid);
            const what = `${c.accel}, serial ${JSON.stringify(c.serial)}:\n${res.stderr}`;
            assert.equal(res.code, 1, what);
            assert.match(res.stderr, /failed in phase 'serial': timed out after 1\.0 s/, what);
            if (c.hint) assert.match(res.stderr, /hint: the guest printed nothing past the boot stub under KVM.*pulumi config set pcp-eval:vmAccel tcg/, what);
            else assert.doesNotMatch(res.stderr, /hint:/, what);
            assert.match(res.stderr, /the VM was stopped \(term\)/, what);
            assert.equal(processAlive(pid), false, what);
        }
    });

    it("the accelerator is chosen at start: --accel kvm|tcg, or auto from the verdict remembered for this boot; the runner gets PCP_EVAL_ACCEL", { timeout: TEST_TIMEOUT }, async (t) => {
        // No QEMU: a stand-in runner writes down the accelerator it was given, then runs until stopped.
        if (!requireTools(t, ["jq", "setsid", "flock", "timeout"])) return;
        const runner = standInRunner(path.join(root, "runner-accel"), ['printf %s "${PCP_EVAL_ACCEL-unset}" >accel.txt', "trap 'exit 0' TERM", "sleep 600 & wait"]);
        const boot = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
        const verdict = path.join(root, "kvm-probe");
        const cases: Array<{ args: string[]; file?: string; want: string; accel: string | null; note?: RegExp }> = [
            { args: ["--accel", "tcg"], want: "tcg", accel: "tcg" },
            { args: ["--accel", "kvm"], want: "kvm", accel: "kvm" },
            { args: ["--accel", "auto", "--kvm-verdict", verdict], file: `${boot} yes a test boot ran to its end\n`, want: "kvm", accel: "kvm" },
            { args: ["--accel", "auto", "--kvm-verdict", verdict], file: `${boot} no a test boot did not finish\n`, want: "tcg", accel: "tcg" },
            { args: ["--accel", "auto", "--kvm-verdict", verdict], file: "another-boot yes ran\n", want: "tcg", accel: "tcg", note: /TCG: no KVM verdict for this boot in \S+kvm-probe \(only a KVM test boot by pulumi up's preflight writes one\)/ },
            { args: [], want: "unset", accel: null },
        ];
        for (const [i, c] of cases.entries()) {
            if (c.file !== undefined) fs.writeFileSync(verdict, c.file);
            const name = `accel-${i}`;
            const res = await vmSh(["start", "--name", name, "--state-dir", stateDir, "--runner", runner, ...c.args]);
            const what = `${c.args.join(" ")}:\n${res.stderr}`;
            const out = parseJson<VmStartResult & { accel: string | null }>(res);
            startedPids.add(out.pid);
            assert.equal(out.accel, c.accel, what);
            if (c.note) assert.match(res.stderr, c.note, what);
            const file = path.join(out.stateDir, "accel.txt");
            assert.equal(await fileWritten(file, 30_000), c.want, what);
            assert.equal((await stop(name, ["--shutdown-timeout", "1", "--exit-timeout", "5", "--purge"])).stopped, true);
        }
    });

    it("the plugin's MicroVmProcess: create waits for readiness, read sees kill -9, diff replaces, delete stops", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        plugin ??= await startProviderPlugin();
        const provider = plugin.resource<MicroVmProcessState>("MicroVmProcess");
        const [pmproxy, serial, virtio] = await freePorts(3);
        const runner = await makeRunner({
            out: path.join(root, "runner-provider"),
            name: "pe5-provider",
            serialPort: serial,
            virtioPort: virtio,
            forwards: [{ host: pmproxy, guest: guest.pmproxy }],
            httpServices: [guest.pmproxy],
        });
        const inputs: MicroVmProcessInputs = {
            name: "provider",
            runner: runner.runner,
            stateDir,
            scriptPath: vmScript,
            ports: [pmproxy, serial, virtio],
            probes: [`serial=console:127.0.0.1:${serial}`, `services=http://127.0.0.1:${pmproxy}/pmapi/context`],
            timeouts: { start: 5, services: 60, shutdown: 10, exit: 10 },
        };
        assert.deepEqual((await provider.check({}, inputs)).failures, []);
        const seen = plugin.stderr().length;
        const created = await provider.create(inputs);
        const outs = created.outs;
        startedPids.add(outs.pid);
        assert.equal(created.id, path.join(stateDir, "provider"));
        assert.equal((await httpGet(`http://127.0.0.1:${pmproxy}/pmapi/context`)).status, 200);
        // vm.sh's progress lines (its readiness phases) reached the plugin's log.
        assert.match(await plugin.stderrUntil(/^vm provider: ready in /m, seen), /^vm provider: phase services: ready after /m);

        assert.deepEqual(await provider.read(created.id, outs), { id: created.id, props: outs });
        assert.equal((await provider.diff(created.id, outs, inputs)).changes, false);

        process.kill(outs.pid, "SIGKILL");
        for (let i = 0; i < 100 && processAlive(outs.pid); i++) await new Promise((r) => setTimeout(r, 50));
        // refresh: the dead VM reads as gone; up (even without refresh): diff plans a replacement
        assert.deepEqual(await provider.read(created.id, outs), { id: "" });
        assert.deepEqual(await provider.diff(created.id, outs, inputs), { changes: true, replaces: ["pid"], deleteBeforeReplace: true, diffs: ["pid"] });

        const again = await provider.create(inputs);
        const outs2 = again.outs;
        startedPids.add(outs2.pid);
        assert.notEqual(outs2.pid, outs.pid);
        await provider.delete(again.id, outs2);
        assert.equal(processAlive(outs2.pid), false);
        assert.equal((await status("provider")).running, false);
    });

    it("bad input is refused with the field named", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        const cases: Array<[string[], RegExp]> = [
            [["start", "--name", "x", "--state-dir", stateDir], /--runner is required/],
            [["start", "--name", "x", "--state-dir", stateDir, "--runner", root], /--runner: .*bin\/microvm-run is not an executable/],
            [["start", "--name", "x", "--state-dir", stateDir, "--runner", root, "--probe", "serial=udp:1"], /--probe serial=udp:1: SPEC must be/],
            [["start", "--name", "x", "--state-dir", stateDir, "--runner", root, "--timeout", "serial=soon"], /--timeout serial: 'soon' is not a number of seconds/],
            [["start", "--name", "x", "--state-dir", stateDir, "--runner", root, "--port", "70000"], /--port: '70000' is not a TCP port/],
            [["start", "--name", "x", "--state-dir", stateDir, "--runner", root, "--accel", "hvf"], /--accel: 'hvf' must be auto, kvm or tcg/],
            [["status", "--name", "../x", "--state-dir", stateDir], /--name '\.\.\/x'/],
            [["stop", "--name", "x"], /--state-dir is required/],
            [["reboot", "--name", "x", "--state-dir", stateDir], /unknown verb 'reboot'/],
        ];
        for (const [args, re] of cases) {
            const res = await vmSh(args);
            assert.equal(res.code, 2, `${args.join(" ")}: ${res.stderr}`);
            assert.match(res.stderr, re);
            assert.equal(res.stdout, "");
        }
    });

    it("nothing the suite started is left running", { timeout: TEST_TIMEOUT }, async (t) => {
        if (!gate(t)) return;
        assert.ok(startedPids.size >= 6, `the suite started ${startedPids.size} VMs`);
        assert.deepEqual([...startedPids].filter(processAlive), []);
        assert.deepEqual(processesUnder(root), []);
        const list = parseJson<VmStatus[]>(await vmSh(["list", "--state-dir", stateDir]));
        assert.deepEqual(list.filter((s) => s.running), []);
    });
});
