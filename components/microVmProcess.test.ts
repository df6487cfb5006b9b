/**
 * The provider plugin's MicroVmProcess (provider/microvm.go) without QEMU: the
 * vm.sh command lines it runs, its input checks, and its drift logic, driven
 * over gRPC as the engine drives it, against a stand-in vm.sh that answers
 * from files and records its arguments. The real vm.sh and QEMU are in
 * test/integration/vm.test.ts.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { startProviderPlugin, type DiffResult, type PluginResource, type ProviderPlugin } from "../test/helpers/providerPlugin";
import type { MicroVmProcessInputs, MicroVmProcessState } from "./microVmProcess";

const inputs: MicroVmProcessInputs = {
    name: "eval",
    runner: "/nix/store/abc-microvm-eval",
    stateDir: "/srv/state/vms",
    scriptPath: "/srv/project/host/vm.sh",
    ports: [31022, 31321, 31510, 31511],
    probes: ["serial=console:127.0.0.1:31510", "services=tcp:127.0.0.1:31321", "services=http://127.0.0.1:31322/pmapi/context"],
    timeouts: { start: 5, services: 60, shutdown: 30, exit: 60 },
};

let dir = "";
let plugin: ProviderPlugin;
let provider: PluginResource<MicroVmProcessState>;
/** The state of a running VM whose vm.sh is the stand-in (state dir: the test's dir). */
let props: MicroVmProcessState;

const write = (file: string, content: string): void => fs.writeFileSync(path.join(dir, file), content);
/** The stand-in's command lines so far, one per call ("$*"). */
const calls = (): string[] =>
    fs.existsSync(path.join(dir, "calls")) ? fs.readFileSync(path.join(dir, "calls"), "utf8").trim().split("\n") : [];
/** The command lines of what `action` ran. */
async function callsOf(action: () => Promise<unknown>): Promise<string[]> {
    const before = calls().length;
    await action();
    return calls().slice(before);
}
/** What a diff plans, without the keys shown. */
const plan = ({ changes, replaces, deleteBeforeReplace }: DiffResult) => ({ changes, replaces, deleteBeforeReplace });
const startJson = (): string =>
    JSON.stringify({ name: "eval", pid: 4242, startedAt: "2026-01-01T00:00:00Z", readyMs: 1234, phases: {}, ports: [], stateDir: props.vmDir, log: "x" }) + "\n";
/** The inputs with the stand-in's script and the test's state dir. */
const here = (extra: Partial<MicroVmProcessInputs> = {}): MicroVmProcessInputs => ({ ...inputs, scriptPath: props.scriptPath, stateDir: props.stateDir, ...extra });

before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe5-provider-"));
    write(
        "vm.sh",
        [
            "#!/usr/bin/env bash",
            'dir=$(dirname "$0")',
            'printf "%s\\n" "$*" >>"$dir/calls"',
            'if [[ -f $dir/fail ]]; then echo "vm eval: phase services: waiting" >&2; cat "$dir/fail" >&2; exit 1; fi',
            'echo "vm eval: $1: progress line" >&2',
            'cat "$dir/$1.json"',
            "",
        ].join("\n"),
    );
    props = {
        ...inputs,
        stateDir: dir,
        scriptPath: path.join(dir, "vm.sh"),
        pid: 4242,
        startedAt: "2026-01-01T00:00:00Z",
        readyMs: 1234,
        vmDir: path.join(dir, "eval"),
    };
    // Started where the engine starts it, the project directory: here the test's.
    plugin = await startProviderPlugin({ cwd: dir });
    provider = plugin.resource<MicroVmProcessState>("MicroVmProcess");
});

after(async () => {
    await plugin?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe("the vm.sh command lines", () => {
    it("start passes runner, ports, probes in order and every timeout (start is the process phase)", async () => {
        write("start.json", startJson());
        const ran = await callsOf(() => provider.create(here()));
        const start = ran.at(-1)!.split(" ");
        assert.deepEqual(start.slice(0, start.indexOf("--timeout")), [
            "start", "--name", "eval", "--state-dir", dir, "--runner", "/nix/store/abc-microvm-eval",
            "--port", "31022", "--port", "31321", "--port", "31510", "--port", "31511",
            "--probe", "serial=console:127.0.0.1:31510", "--probe", "services=tcp:127.0.0.1:31321",
            "--probe", "services=http://127.0.0.1:31322/pmapi/context",
        ]);
        // The timeouts last, one --timeout PHASE=SECONDS each (their order is no part of the contract).
        const timeouts = start.slice(start.indexOf("--timeout"));
        assert.deepEqual(timeouts.filter((_, i) => i % 2 === 0), ["--timeout", "--timeout", "--timeout", "--timeout"]);
        assert.deepEqual(timeouts.filter((_, i) => i % 2 === 1).sort(), ["exit=60", "process=5", "services=60", "shutdown=30"]);
    });

    it("start passes the accelerator setting, and the verdict file for auto only", async () => {
        write("start.json", startJson());
        const start = async (extra: Partial<MicroVmProcessInputs>): Promise<string[]> =>
            (await callsOf(() => provider.create(here(extra)))).at(-1)!.split(" ").slice(7, 11);
        assert.deepEqual(await start({ accel: "auto", kvmVerdict: "/c/kvm-probe" }), ["--accel", "auto", "--kvm-verdict", "/c/kvm-probe"]);
        assert.deepEqual((await start({ accel: "tcg", kvmVerdict: "/c/kvm-probe" })).slice(0, 3), ["--accel", "tcg", "--port"]);
        assert.ok(!(await callsOf(() => provider.create(here()))).at(-1)!.split(" ").includes("--accel"), "no setting: the runner's default");
    });

    it("stop passes only the shutdown and exit timeouts (and --purge on delete); status only name and state dir", async () => {
        write("stop.json", JSON.stringify({ name: "eval", stopped: true, how: "graceful" }));
        write("status.json", JSON.stringify({ name: "eval", running: true, pid: 4242 }));
        try {
            assert.deepEqual(await callsOf(() => provider.delete(props.vmDir, props)), [
                `stop --name eval --state-dir ${dir} --shutdown-timeout 30 --exit-timeout 60 --purge`,
            ]);
            assert.deepEqual(await callsOf(() => provider.delete(props.vmDir, { ...props, timeouts: {} })), [`stop --name eval --state-dir ${dir} --purge`]);
            assert.deepEqual(await callsOf(() => provider.read(props.vmDir, props)), [`status --name eval --state-dir ${dir}`]);
            // The leftover a create stops first is stopped, not purged.
            write("start.json", startJson());
            assert.deepEqual(await callsOf(() => provider.create(here())).then((c) => c.slice(0, 2)), [
                `status --name eval --state-dir ${dir}`,
                `stop --name eval --state-dir ${dir} --shutdown-timeout 30 --exit-timeout 60`,
            ]);
        } finally {
            fs.rmSync(path.join(dir, "status.json"));
        }
    });
});

describe("check", () => {
    const check = async (news: object) => (await provider.check({}, news)).failures;

    it("accepts good inputs and returns them as the inputs", async () => {
        assert.deepEqual(await check(inputs), []);
        assert.deepEqual((await provider.check({}, inputs)).inputs, inputs);
    });
    it("names every bad field", async () => {
        const failures = await check({
            ...inputs,
            name: "../eval",
            stateDir: "relative/dir",
            ports: [0, 31321, 31321],
            probes: ["serial=udp:1", "process=tcp:127.0.0.1:1", "nophase"],
            timeouts: { services: -1 },
        });
        assert.deepEqual(
            failures.map((f) => f.property),
            ["name", "stateDir", "ports[0]", "ports", "probes[0]", "probes[1]", "probes[2]", "timeouts.services"],
        );
        assert.match(failures[0]!.reason, /'\.\.\/eval'/);
        assert.match(failures[1]!.reason, /'relative\/dir' must be an absolute path, or give dir/);
        assert.match(failures[2]!.reason, /0 is not a TCP port/);
        assert.match(failures[3]!.reason, /listed twice: 31321/);
        assert.match(failures[5]!.reason, /PHASE not "process"/);
        assert.match(failures[7]!.reason, /-1 must be a positive number of seconds/);
        // Relative to a given project dir, the same state dir is fine.
        assert.deepEqual(await check({ ...inputs, dir: "/srv/project", stateDir: "relative/dir" }), []);
    });
    it("does not judge values that are unknown during preview", async () => {
        const unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
        assert.deepEqual(await check({ ...inputs, runner: unknown, stateDir: unknown, ports: [unknown, 31321] }), []);
    });
});

describe("the plugin against a stand-in vm.sh", () => {
    it("create runs vm.sh start and returns the VM dir as id with pid, start time and readiness, its progress lines shown as they come", async () => {
        write("start.json", startJson());
        const seen = plugin.stderr().length;
        const res = await provider.create(here());
        assert.equal(res.id, props.vmDir);
        assert.deepEqual(res.outs, props);
        assert.match(calls().at(-1) ?? "", /^start --name eval --state-dir .* --runner \/nix\/store\/abc-microvm-eval --port 31022/);
        // start's progress reaches the plugin's log; the quiet status before it does not.
        const shown = await plugin.stderrUntil(/^vm eval: start: progress line$/m, seen);
        assert.doesNotMatch(shown, /vm eval: status: progress line/);
    });

    it("create first stops a leftover VM of the same name (an interrupted up), then starts", async () => {
        write("start.json", startJson());
        write("status.json", JSON.stringify({ name: "eval", running: true, pid: 999 }));
        write("stop.json", JSON.stringify({ name: "eval", stopped: true, how: "graceful" }));
        try {
            assert.deepEqual((await callsOf(() => provider.create(here()))).map((c) => c.split(" ")[0]), ["status", "stop", "start"]);
            // Not running: nothing to stop.
            write("status.json", JSON.stringify({ name: "eval", running: false }));
            assert.deepEqual((await callsOf(() => provider.create(here()))).map((c) => c.split(" ")[0]), ["status", "start"]);
        } finally {
            fs.rmSync(path.join(dir, "status.json"));
        }
    });

    it("create fails with vm.sh's report", async () => {
        write("fail", "vm.sh start eval: failed in phase 'services': timed out after 60.0 s; last probe error: ...\n--- VM log ---\n");
        try {
            await assert.rejects(provider.create(here()), /vm\.sh start eval failed \(exit 1\):\n[\s\S]*failed in phase 'services'[\s\S]*--- VM log ---/);
        } finally {
            fs.rmSync(path.join(dir, "fail"));
        }
    });

    it("read keeps a running VM and reads a dead one as gone (refresh drops it, the next up recreates it)", async () => {
        write("status.json", JSON.stringify({ name: "eval", running: true, pid: 4242, uptimeSeconds: 9, startedAt: props.startedAt, ports: [] }));
        try {
            assert.deepEqual(await provider.read(props.vmDir, props), { id: props.vmDir, props });
            write("status.json", JSON.stringify({ name: "eval", running: true, pid: 5151, startedAt: "2026-01-02T00:00:00Z" }));
            assert.deepEqual(await provider.read(props.vmDir, props), { id: props.vmDir, props: { ...props, pid: 5151, startedAt: "2026-01-02T00:00:00Z" } });
            write("status.json", JSON.stringify({ name: "eval", running: false, stale: true, reason: "pid 4242 is gone" }));
            assert.deepEqual(await provider.read(props.vmDir, props), { id: "" });
        } finally {
            fs.rmSync(path.join(dir, "status.json"));
        }
    });

    it("diff replaces on runner, ports or a dead process; updates in place on probes and timeouts", async () => {
        write("status.json", JSON.stringify({ name: "eval", running: true, pid: 4242 }));
        try {
            assert.deepEqual(await provider.diff(props.vmDir, props, { ...props }), { changes: false, replaces: [], deleteBeforeReplace: true, diffs: [] });
            assert.deepEqual(await provider.diff(props.vmDir, props, { ...props, runner: "/nix/store/def-microvm-eval" }), {
                changes: true,
                replaces: ["runner"],
                deleteBeforeReplace: true,
                diffs: ["runner"],
            });
            assert.deepEqual(await provider.diff(props.vmDir, props, { ...props, ports: [1, 2] }), { changes: true, replaces: ["ports"], deleteBeforeReplace: true, diffs: ["ports"] });
            assert.deepEqual(await provider.diff(props.vmDir, props, { ...props, timeouts: { services: 90 } }), {
                changes: true,
                replaces: [],
                deleteBeforeReplace: true,
                diffs: ["timeouts"],
            });
            assert.deepEqual(plan(await provider.diff(props.vmDir, props, { ...props, probes: ["serial=console:127.0.0.1:31510"] })), {
                changes: true,
                replaces: [],
                deleteBeforeReplace: true,
            });
            write("status.json", JSON.stringify({ name: "eval", running: false }));
            assert.deepEqual(await provider.diff(props.vmDir, props, { ...props }), { changes: true, replaces: ["pid"], deleteBeforeReplace: true, diffs: ["pid"] });
            // Another process under the VM's name (the VM was restarted by hand): not the one recorded.
            write("status.json", JSON.stringify({ name: "eval", running: true, pid: 5151 }));
            assert.deepEqual((await provider.diff(props.vmDir, props, { ...props })).replaces, ["pid"]);
        } finally {
            fs.rmSync(path.join(dir, "status.json"));
        }
    });

    it("update keeps the running VM's pid, start time and readiness, taking the new probes and timeouts", async () => {
        const news = here({ timeouts: { services: 90 }, probes: ["serial=console:127.0.0.1:31510"] });
        const ran = await callsOf(async () => {
            const { outs } = await provider.update(props.vmDir, props, news);
            assert.deepEqual(outs, { ...news, pid: props.pid, startedAt: props.startedAt, readyMs: props.readyMs, vmDir: props.vmDir });
        });
        assert.deepEqual(ran, [], "the VM is left alone");
    });

    it("diff and read fail with vm.sh's message when the host cannot answer (not a silent 'no change')", async () => {
        write("fail", "vm.sh: --state-dir: cannot read the VM's record\n");
        try {
            await assert.rejects(provider.diff(props.vmDir, props, { ...props }), /vm\.sh status eval failed \(exit 1\):\n[\s\S]*cannot read the VM's record/);
            await assert.rejects(provider.read(props.vmDir, props), /vm\.sh status eval failed \(exit 1\):\n[\s\S]*cannot read the VM's record/);
        } finally {
            fs.rmSync(path.join(dir, "fail"));
        }
    });

    it("diff: a moved checkout (dir only, paths relative to it) or the same state dir written relative is an update, never a replace", async () => {
        write("status.json", JSON.stringify({ name: "eval", running: true, pid: 4242 }));
        const projectDir = path.dirname(props.stateDir);
        const relative = { ...props, dir: projectDir, stateDir: path.basename(props.stateDir) };
        const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), "pe15-moved-"));
        try {
            assert.deepEqual(plan(await provider.diff(props.vmDir, props, relative)), { changes: true, replaces: [], deleteBeforeReplace: true });
            // The checkout moved (the old one is gone): the VM is asked for where it is now.
            const moved = { ...relative, dir: elsewhere };
            const ran = await callsOf(async () =>
                assert.deepEqual(plan(await provider.diff(props.vmDir, { ...relative, dir: path.join(elsewhere, "gone") }, moved)), {
                    changes: true,
                    replaces: [],
                    deleteBeforeReplace: true,
                }),
            );
            assert.deepEqual(ran, [`status --name eval --state-dir ${path.basename(props.stateDir)}`]);
            assert.deepEqual(plan(await provider.diff(props.vmDir, relative, { ...relative, stateDir: "other" })), {
                changes: true,
                replaces: ["stateDir"],
                deleteBeforeReplace: true,
            });
        } finally {
            fs.rmSync(elsewhere, { recursive: true, force: true });
            fs.rmSync(path.join(dir, "status.json"));
        }
    });

    it("a VM whose recorded checkout is gone is read by the vm.sh of the plugin's working directory (the project's new place)", async () => {
        write("status.json", JSON.stringify({ name: "eval", running: true, pid: 4242 }));
        try {
            // Script and state dir recorded relative to a project that is gone; the plugin runs in the test's dir, which has vm.sh.
            const state = { ...props, dir: path.join(dir, "gone-checkout"), scriptPath: "vm.sh", stateDir: "." };
            const ran = await callsOf(async () => assert.equal((await provider.read(props.vmDir, state)).id, props.vmDir));
            assert.deepEqual(ran, ["status --name eval --state-dir ."]);
        } finally {
            fs.rmSync(path.join(dir, "status.json"));
        }
    });

    it("the KVM verdict is read at start, so it replaces nothing; a changed accelerator setting replaces with 'accel' as the reason", async () => {
        write("status.json", JSON.stringify({ name: "eval", running: true, pid: 4242 }));
        try {
            const diff = async (olds: MicroVmProcessState, news: MicroVmProcessState) => plan(await provider.diff(props.vmDir, olds, news));
            const auto: MicroVmProcessState = { ...props, accel: "auto", kvmVerdict: "/cache/pcp-eval/kvm-probe" };
            // The same inputs whatever the verdict: the runner and the process carry the setting, not the fact.
            assert.deepEqual(await diff(auto, { ...auto }), { changes: false, replaces: [], deleteBeforeReplace: true });
            // The verdict file moved (another cache dir): an update, the VM keeps running.
            assert.deepEqual(await diff(auto, { ...auto, kvmVerdict: "/other/kvm-probe" }), { changes: true, replaces: [], deleteBeforeReplace: true });
            assert.deepEqual(await diff(auto, { ...auto, accel: "tcg" }), { changes: true, replaces: ["accel"], deleteBeforeReplace: true });
            // A state recorded before accel was an input has neither accel nor kvmVerdict. Given both now:
            // the verdict file is an update key, so an update; the accel it lacks replaces nothing.
            assert.deepEqual(await diff(props, auto), { changes: true, replaces: [], deleteBeforeReplace: true });
            // Given accel alone (no verdict file): nothing recorded to compare it with, so no change.
            assert.deepEqual(await diff(props, { ...props, accel: "auto" }), { changes: false, replaces: [], deleteBeforeReplace: true });
        } finally {
            fs.rmSync(path.join(dir, "status.json"));
        }
    });

    it("delete runs vm.sh stop with the shutdown and exit timeouts, purging the VM dir, and fails with vm.sh's report", async () => {
        write("stop.json", JSON.stringify({ name: "eval", stopped: true, how: "graceful" }));
        await provider.delete(props.vmDir, props);
        assert.match(calls().at(-1) ?? "", /^stop --name eval --state-dir \S+ --shutdown-timeout 30 --exit-timeout 60 --purge$/);
        write("fail", "vm.sh stop eval: pid 4242 did not exit\n");
        try {
            await assert.rejects(provider.delete(props.vmDir, props), /vm\.sh stop eval failed \(exit 1\):\n[\s\S]*did not exit/);
        } finally {
            fs.rmSync(path.join(dir, "fail"));
        }
    });
});
