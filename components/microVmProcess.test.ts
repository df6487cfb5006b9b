/**
 * The MicroVmProcess dynamic provider without QEMU: its vm.sh command lines,
 * its input checks, and its drift logic, run from the text Pulumi's closure
 * serializer produces (as the dynamic provider host loads it) against a
 * stand-in vm.sh that answers from files. The real vm.sh and QEMU are in
 * test/integration/vm.test.ts.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { loadSerializedProvider } from "../test/helpers/dynamicProvider";
import { checkInputs, microVmProcessProvider, MicroVmProcessInputs, MicroVmProcessState, vmShArgs } from "./microVmProcess";

type Provider = typeof microVmProcessProvider;
type Required<T> = T extends undefined ? never : T;
type ReadFn = Required<Provider["read"]>;
type DiffFn = Required<Provider["diff"]>;
type DeleteFn = Required<Provider["delete"]>;

const inputs: MicroVmProcessInputs = {
    name: "eval",
    runner: "/nix/store/abc-microvm-eval",
    stateDir: "/srv/state/vms",
    scriptPath: "/srv/project/host/vm.sh",
    ports: [31022, 31321, 31510, 31511],
    probes: ["serial=console:127.0.0.1:31510", "services=tcp:127.0.0.1:31321", "services=http://127.0.0.1:31322/pmapi/context"],
    timeouts: { start: 5, services: 60, shutdown: 30, exit: 60 },
};

describe("vmShArgs", () => {
    it("start passes runner, ports, probes in order and timeouts (start is the process phase)", () => {
        assert.deepEqual(vmShArgs(inputs, "start"), [
            "start", "--name", "eval", "--state-dir", "/srv/state/vms", "--runner", "/nix/store/abc-microvm-eval",
            "--port", "31022", "--port", "31321", "--port", "31510", "--port", "31511",
            "--probe", "serial=console:127.0.0.1:31510", "--probe", "services=tcp:127.0.0.1:31321",
            "--probe", "services=http://127.0.0.1:31322/pmapi/context",
            "--timeout", "process=5", "--timeout", "services=60", "--timeout", "shutdown=30", "--timeout", "exit=60",
        ]);
    });
    it("start passes the accelerator setting, and the verdict file for auto only", () => {
        const start = (extra: Partial<MicroVmProcessInputs>): string[] => vmShArgs({ ...inputs, ...extra }, "start").slice(7, 11);
        assert.deepEqual(start({ accel: "auto", kvmVerdict: "/c/kvm-probe" }), ["--accel", "auto", "--kvm-verdict", "/c/kvm-probe"]);
        assert.deepEqual(start({ accel: "tcg", kvmVerdict: "/c/kvm-probe" }).slice(0, 3), ["--accel", "tcg", "--port"]);
        assert.ok(!vmShArgs(inputs, "start").includes("--accel"), "no setting: the runner's default");
    });
    it("stop passes only the shutdown and exit timeouts; status only name and state dir", () => {
        assert.deepEqual(vmShArgs(inputs, "stop"), [
            "stop", "--name", "eval", "--state-dir", "/srv/state/vms", "--shutdown-timeout", "30", "--exit-timeout", "60",
        ]);
        assert.deepEqual(vmShArgs({ ...inputs, timeouts: {} }, "stop"), ["stop", "--name", "eval", "--state-dir", "/srv/state/vms"]);
        assert.deepEqual(vmShArgs(inputs, "status"), ["status", "--name", "eval", "--state-dir", "/srv/state/vms"]);
        assert.deepEqual(vmShArgs(inputs, "stop", { purge: true }).slice(-1), ["--purge"]);
    });
});

describe("checkInputs", () => {
    it("accepts good inputs", () => {
        assert.deepEqual(checkInputs(inputs), []);
    });
    it("names every bad field", () => {
        const failures = checkInputs({
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
        assert.match(failures[0].reason, /'\.\.\/eval'/);
        assert.match(failures[3].reason, /listed twice: 31321/);
    });
    it("does not judge values that are unknown during preview", () => {
        const unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
        assert.deepEqual(checkInputs({ ...inputs, runner: unknown, stateDir: unknown }), []);
    });
});

describe("the serialized provider against a stand-in vm.sh", () => {
    let dir = "";
    let provider: Provider;
    let props: MicroVmProcessState;

    const write = (file: string, content: string): void => fs.writeFileSync(path.join(dir, file), content);
    const calls = (): string[] =>
        fs.existsSync(path.join(dir, "calls")) ? fs.readFileSync(path.join(dir, "calls"), "utf8").trim().split("\n") : [];

    before(async () => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe5-provider-"));
        write(
            "vm.sh",
            [
                "#!/usr/bin/env bash",
                'dir=$(dirname "$0")',
                'printf "%s\\n" "$*" >>"$dir/calls"',
                'if [[ -f $dir/fail ]]; then echo "vm eval: phase services: waiting" >&2; cat "$dir/fail" >&2; exit 1; fi',
                'echo "vm eval: progress line" >&2',
                'cat "$dir/$1.json"',
                "",
            ].join("\n"),
        );
        provider = await loadSerializedProvider(microVmProcessProvider);
        props = {
            ...inputs,
            stateDir: dir,
            scriptPath: path.join(dir, "vm.sh"),
            pid: 4242,
            startedAt: "2026-01-01T00:00:00Z",
            readyMs: 1234,
            vmDir: path.join(dir, "eval"),
        };
    });

    after(() => {
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it("create runs vm.sh start and returns the VM dir as id with pid, start time and readiness", async () => {
        write(
            "start.json",
            JSON.stringify({ name: "eval", pid: 4242, startedAt: "2026-01-01T00:00:00Z", readyMs: 1234, phases: {}, ports: [], stateDir: props.vmDir, log: "x" }) + "\n",
        );
        const { scriptPath, stateDir } = props;
        const res = await provider.create({ ...inputs, scriptPath, stateDir });
        assert.equal(res.id, props.vmDir);
        assert.deepEqual(res.outs, props);
        assert.match(calls().at(-1) ?? "", /^start --name eval --state-dir .* --runner \/nix\/store\/abc-microvm-eval --port 31022/);
    });

    it("create first stops a leftover VM of the same name (an interrupted up), then starts", async () => {
        write("status.json", JSON.stringify({ name: "eval", running: true, pid: 999 }));
        write("stop.json", JSON.stringify({ name: "eval", stopped: true, how: "graceful" }));
        const before = calls().length;
        const { scriptPath, stateDir } = props;
        await provider.create({ ...inputs, scriptPath, stateDir });
        assert.deepEqual(
            calls().slice(before).map((c) => c.split(" ")[0]),
            ["status", "stop", "start"],
        );
        fs.rmSync(path.join(dir, "status.json"));
    });

    it("create fails with vm.sh's report", async () => {
        write("fail", "vm.sh start eval: failed in phase 'services': timed out after 60.0 s; last probe error: ...\n--- VM log ---\n");
        try {
            const { scriptPath, stateDir } = props;
            await assert.rejects(provider.create({ ...inputs, scriptPath, stateDir }), /vm\.sh start eval failed \(exit 1\):\n[\s\S]*failed in phase 'services'[\s\S]*--- VM log ---/);
        } finally {
            fs.rmSync(path.join(dir, "fail"));
        }
    });

    it("read keeps a running VM and reads a dead one as gone (refresh drops it, the next up recreates it)", async () => {
        const read = provider.read as ReadFn;
        write("status.json", JSON.stringify({ name: "eval", running: true, pid: 4242, uptimeSeconds: 9, startedAt: props.startedAt, ports: [] }));
        assert.deepEqual(await read(props.vmDir, props), { id: props.vmDir, props });
        write("status.json", JSON.stringify({ name: "eval", running: true, pid: 5151, startedAt: "2026-01-02T00:00:00Z" }));
        assert.deepEqual(await read(props.vmDir, props), { id: props.vmDir, props: { ...props, pid: 5151, startedAt: "2026-01-02T00:00:00Z" } });
        write("status.json", JSON.stringify({ name: "eval", running: false, stale: true, reason: "pid 4242 is gone" }));
        assert.deepEqual(await read(props.vmDir, props), { id: "" });
    });

    it("diff replaces on runner, ports or a dead process; updates in place on probes and timeouts", async () => {
        const diff = provider.diff as DiffFn;
        write("status.json", JSON.stringify({ name: "eval", running: true, pid: 4242 }));
        assert.deepEqual(await diff(props.vmDir, props, { ...props }), { changes: false, replaces: [], deleteBeforeReplace: true });
        assert.deepEqual(await diff(props.vmDir, props, { ...props, runner: "/nix/store/def-microvm-eval" }), {
            changes: true,
            replaces: ["runner"],
            deleteBeforeReplace: true,
        });
        assert.deepEqual(await diff(props.vmDir, props, { ...props, ports: [1, 2] }), { changes: true, replaces: ["ports"], deleteBeforeReplace: true });
        assert.deepEqual(await diff(props.vmDir, props, { ...props, timeouts: { services: 90 } }), { changes: true, replaces: [], deleteBeforeReplace: true });
        write("status.json", JSON.stringify({ name: "eval", running: false }));
        assert.deepEqual(await diff(props.vmDir, props, { ...props }), { changes: true, replaces: ["pid"], deleteBeforeReplace: true });
    });

    it("diff and read fail with vm.sh's message when the host cannot answer (not a silent 'no change')", async () => {
        write("fail", "vm.sh: --state-dir: cannot read the VM's record\n");
        try {
            await assert.rejects((provider.diff as DiffFn)(props.vmDir, props, { ...props }), /vm\.sh status eval failed \(exit 1\):\n[\s\S]*cannot read the VM's record/);
            await assert.rejects((provider.read as ReadFn)(props.vmDir, props), /vm\.sh status eval failed \(exit 1\):\n[\s\S]*cannot read the VM's record/);
        } finally {
            fs.rmSync(path.join(dir, "fail"));
        }
    });

    it("diff: a moved checkout (dir only, paths relative to it) or the same state dir written relative is an update, never a replace", async () => {
        const diff = provider.diff as DiffFn;
        write("status.json", JSON.stringify({ name: "eval", running: true, pid: 4242 }));
        const projectDir = path.dirname(props.stateDir);
        const relative = { ...props, dir: projectDir, stateDir: path.basename(props.stateDir) };
        assert.deepEqual(await diff(props.vmDir, props, relative), { changes: true, replaces: [], deleteBeforeReplace: true });
        // The checkout moved (the old one is gone): the VM is asked for where it is now.
        const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), "pe15-moved-"));
        try {
            const moved = { ...relative, dir: elsewhere };
            assert.deepEqual(await diff(props.vmDir, { ...relative, dir: path.join(elsewhere, "gone") }, moved), { changes: true, replaces: [], deleteBeforeReplace: true });
        } finally {
            fs.rmSync(elsewhere, { recursive: true, force: true });
        }
        assert.deepEqual(await diff(props.vmDir, relative, { ...relative, stateDir: "other" }), { changes: true, replaces: ["stateDir"], deleteBeforeReplace: true });
    });

    it("the KVM verdict is read at start, so it replaces nothing; a changed accelerator setting replaces with 'accel' as the reason", async () => {
        const diff = provider.diff as DiffFn;
        write("status.json", JSON.stringify({ name: "eval", running: true, pid: 4242 }));
        const auto = { ...props, accel: "auto" as const, kvmVerdict: "/cache/pcp-eval/kvm-probe" };
        // The same inputs whatever the verdict: the runner and the process carry the setting, not the fact.
        assert.deepEqual(await diff(props.vmDir, auto, { ...auto }), { changes: false, replaces: [], deleteBeforeReplace: true });
        // The verdict file moved (another cache dir): an update, the VM keeps running.
        assert.deepEqual(await diff(props.vmDir, auto, { ...auto, kvmVerdict: "/other/kvm-probe" }), { changes: true, replaces: [], deleteBeforeReplace: true });
        assert.deepEqual(await diff(props.vmDir, auto, { ...auto, accel: "tcg" }), { changes: true, replaces: ["accel"], deleteBeforeReplace: true });
        // A state recorded before accel was an input has neither accel nor kvmVerdict. Given both now:
        // the verdict file is an update key, so an update; the accel it lacks replaces nothing.
        assert.deepEqual(await diff(props.vmDir, props, auto), { changes: true, replaces: [], deleteBeforeReplace: true });
        // Given accel alone (no verdict file): nothing recorded to compare it with, so no change.
        assert.deepEqual(await diff(props.vmDir, props, { ...props, accel: "auto" }), { changes: false, replaces: [], deleteBeforeReplace: true });
    });

    it("delete runs vm.sh stop with the shutdown and exit timeouts, purging the VM dir", async () => {
        write("stop.json", JSON.stringify({ name: "eval", stopped: true, how: "graceful" }));
        await (provider.delete as DeleteFn)(props.vmDir, props);
        assert.match(calls().at(-1) ?? "", /^stop --name eval --state-dir \S+ --shutdown-timeout 30 --exit-timeout 60 --purge$/);
    });
});
