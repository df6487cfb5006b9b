/**
 * components/run.ts, the one child-process runner of the components, and the
 * provider plugin's runner (provider/run.go) as a HostCommand shows it: where
 * a command runs, what it keeps, how a failure reads.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { startProviderPlugin, type PluginResource, type ProviderPlugin } from "../test/helpers/providerPlugin";
import type { HostCommandOutputs } from "./hostCommand";
import { parseLastJsonLine, projectRelative, run, runJson } from "./run";

/** Runs `node -e CODE` that imports run.ts and calls run() on SCRIPT; resolves with what reached its stderr. */
function stderrOfRun(script: string, echo: boolean): Promise<string> {
    const code = `require(${JSON.stringify(require.resolve("./run"))}).run("/bin/sh", ["-c", ${JSON.stringify(script)}], { echo: ${echo} }).catch(() => undefined);`;
    return new Promise((resolve) => {
        const child = spawn(process.execPath, ["--import", "tsx", "-e", code], { stdio: ["ignore", "ignore", "pipe"] });
        let err = "";
        child.stderr.on("data", (d: Buffer) => (err += d.toString()));
        child.on("close", () => resolve(err));
    });
}

describe("run", () => {
    it("resolves with stdout and stderr, without the final newline", async () => {
        assert.deepEqual(await run("/bin/sh", ["-c", "echo out; echo err >&2"], { echo: false }), { stdout: "out", stderr: "err" });
    });

    it("runs in cwd", async () => {
        assert.equal((await run("pwd", [], { cwd: "/tmp", echo: false })).stdout, "/tmp");
    });

    it("fails naming the command, its exit status and the tail of its stderr", async () => {
        const script = "for i in $(seq 1 50); do echo line$i >&2; done; exit 3";
        await assert.rejects(run("/bin/sh", ["-c", script], { echo: false, label: "the test command", tailLines: 2 }), (e: Error) => {
            assert.equal(e.message, "the test command failed (exit 3):\nline49\nline50");
            return true;
        });
        await assert.rejects(run("/bin/sh", ["-c", "kill -TERM $$"], { echo: false }), /^Error: \/bin\/sh -c kill -TERM \$\$ failed \(signal SIGTERM\)$/);
        await assert.rejects(run("/nonexistent/tool", [], { echo: false }), /cannot run \/nonexistent\/tool: spawn \/nonexistent\/tool ENOENT/);
        await assert.rejects(run("sleep", ["5"], { echo: false, timeoutMs: 200 }), /sleep 5 failed \(signal SIGTERM\)/);
    });

    it("passes stderr on line by line when echoing, and keeps quiet otherwise", async () => {
        const script = "printf 'one\\ntw' >&2; sleep 0.1; printf 'o\\nthree' >&2";
        assert.equal(await stderrOfRun(script, true), "one\ntwo\nthree\n");
        assert.equal(await stderrOfRun(script, false), "");
    });
});

describe("parseLastJsonLine and runJson", () => {
    it("take the last line of stdout as JSON", async () => {
        assert.deepEqual(parseLastJsonLine("progress\n{\"a\":1}\n", "x"), { a: 1 });
        assert.deepEqual(await runJson("/bin/sh", ["-c", "echo noise; echo '{\"ok\":true}'"], { echo: false }), { ok: true });
    });
    it("say what they expected and what came", async () => {
        assert.throws(() => parseLastJsonLine("not json", "net.sh status"), /^Error: net\.sh status: expected one JSON line on stdout, got: not json$/);
        await assert.rejects(runJson("echo", ["hello"], { echo: false, label: "greeter" }), /greeter: expected one JSON line on stdout, got: hello/);
    });
});

describe("the plugin's runner, through HostCommand", () => {
    let plugin: ProviderPlugin;
    let hostCommand: PluginResource<HostCommandOutputs>;
    /** The plugin's working directory (the engine starts it in the project directory). */
    let pluginDir = "";

    before(async () => {
        pluginDir = fs.mkdtempSync(path.join(os.tmpdir(), "pe-run-plugin-"));
        plugin = await startProviderPlugin({ cwd: pluginDir });
        hostCommand = plugin.resource<HostCommandOutputs>("HostCommand");
    });

    after(async () => {
        await plugin?.close();
        if (pluginDir) fs.rmSync(pluginDir, { recursive: true, force: true });
    });

    it("runs create in dir, keeps its output, passes stderr on line by line, and fails naming the command and its stderr", async () => {
        const seen = plugin.stderr().length;
        const created = await hostCommand.create({ create: "pwd; printf 'one\\ntw' >&2; sleep 0.1; printf 'o\\nthree\\n' >&2", dir: "/tmp" });
        assert.equal(created.outs.stdout, "/tmp");
        assert.equal(created.outs.stderr, "one\ntwo\nthree");
        assert.equal(await plugin.stderrUntil(/three\n/, seen), "one\ntwo\nthree\n", "whole lines, as they came");
        await assert.rejects(hostCommand.create({ create: "echo no disk >&2; exit 4", dir: "/tmp" }), (e: Error) => {
            assert.equal(e.message, "echo no disk >&2; exit 4 failed (exit 4):\nno disk");
            return true;
        });
        await assert.rejects(hostCommand.create({ create: "kill -TERM $$", dir: "/tmp" }), /^Error: kill -TERM \$\$ failed \(signal SIGTERM\)$/);
        const many = "for i in $(seq 1 50); do echo line$i >&2; done; exit 3";
        await assert.rejects(hostCommand.create({ create: many, dir: "/tmp" }), (e: Error) => {
            assert.match(e.message, /failed \(exit 3\):\nline11\n[\s\S]*\nline50$/, "the last 40 lines of stderr");
            assert.doesNotMatch(e.message, /line10\n/);
            return true;
        });
    });

    it("runs in the recorded project dir while it exists, and in its own (the project's new place) once the checkout moved", async () => {
        const moved = fs.mkdtempSync(path.join(os.tmpdir(), "pe-run-"));
        try {
            assert.equal((await hostCommand.create({ create: "pwd", dir: moved })).outs.stdout, moved);
            const gone = path.join(moved, "old-checkout");
            assert.equal(fs.realpathSync((await hostCommand.create({ create: "pwd", dir: gone })).outs.stdout), fs.realpathSync(pluginDir));
            // The same for delete and the check a refresh runs.
            const state = { create: "true", delete: "pwd > deleted-in", check: "echo '{}'; pwd > checked-in", dir: gone, stdout: "{}", stderr: "", live: "ok", drift: "" };
            assert.equal((await hostCommand.read("id", state)).props?.live, "ok");
            await hostCommand.delete("id", state);
            for (const file of ["checked-in", "deleted-in"]) {
                assert.equal(fs.realpathSync(fs.readFileSync(path.join(pluginDir, file), "utf8").trim()), fs.realpathSync(pluginDir), file);
            }
        } finally {
            fs.rmSync(moved, { recursive: true, force: true });
        }
    });
});

describe("project paths", () => {
    it("records a path inside the project relative to it, and one outside as given", () => {
        assert.equal(projectRelative("/a/p/.pcp-eval-state/ci/vms", "/a/p"), ".pcp-eval-state/ci/vms");
        assert.equal(projectRelative("/srv/state/vms", "/a/p"), "/srv/state/vms");
        assert.equal(projectRelative("/a/pq/x", "/a/p"), "/a/pq/x");
        assert.equal(projectRelative("/a/p", "/a/p"), "/a/p");
    });
});
