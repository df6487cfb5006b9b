/**
 * components/run.ts, the one child-process runner of the components and
 * dynamic providers, and the HostCommand provider on it, loaded the way the
 * engine loads it (from its serialized text).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { loadSerializedProvider } from "../test/helpers/dynamicProvider";
import { hostCommandProvider } from "./hostCommand";
import { absoluteStateDir, parseLastJsonLine, projectRelative, projectWorkDir, run, runJson, sameStateDir } from "./run";

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

describe("HostCommand provider (serialized, as the engine runs it)", () => {
    it("runs create in dir, keeps its output, and fails naming the command and its stderr", async () => {
        const provider = await loadSerializedProvider(hostCommandProvider);
        const created = await provider.create!({ create: "pwd; echo note >&2", dir: "/tmp" });
        assert.equal(created.outs?.stdout, "/tmp");
        assert.equal(created.outs?.stderr, "note");
        await assert.rejects(provider.create!({ create: "echo no disk >&2; exit 4", dir: "/tmp" }), /echo no disk >&2; exit 4 failed \(exit 4\):\nno disk/);
    });
});

describe("sameStateDir", () => {
    it("the same text, or the same place once resolved against each record's project directory", () => {
        assert.ok(sameStateDir({ stateDir: ".pcp-eval-state/ci" }, { stateDir: ".pcp-eval-state/ci" }));
        // The checkout moved: the relative path is the same text, so it is the same place.
        assert.ok(sameStateDir({ dir: "/a/p", stateDir: ".pcp-eval-state/ci" }, { dir: "/b/p", stateDir: ".pcp-eval-state/ci" }));
        // A state recorded with an absolute path, now relative to the same project.
        assert.ok(sameStateDir({ stateDir: "/a/p/.pcp-eval-state/ci" }, { dir: "/a/p", stateDir: ".pcp-eval-state/ci" }));
        assert.ok(!sameStateDir({ dir: "/a/p", stateDir: "state-1" }, { dir: "/a/p", stateDir: "state-2" }));
        assert.ok(!sameStateDir({ stateDir: "/srv/one" }, { dir: "/a/p", stateDir: ".pcp-eval-state/ci" }));
    });
});

describe("project paths", () => {
    it("records a path inside the project relative to it, and one outside as given", () => {
        assert.equal(projectRelative("/a/p/.pcp-eval-state/ci/vms", "/a/p"), ".pcp-eval-state/ci/vms");
        assert.equal(projectRelative("/srv/state/vms", "/a/p"), "/srv/state/vms");
        assert.equal(projectRelative("/a/pq/x", "/a/p"), "/a/pq/x");
        assert.equal(projectRelative("/a/p", "/a/p"), "/a/p");
    });

    it("runs in the recorded project dir while it exists, and in the current one once the checkout moved", () => {
        const moved = fs.mkdtempSync(path.join(os.tmpdir(), "pe-run-"));
        try {
            assert.equal(projectWorkDir(moved), moved);
            assert.equal(projectWorkDir(undefined), undefined);
            const gone = path.join(moved, "old-checkout");
            assert.equal(projectWorkDir(gone), process.cwd());
            // net.sh's sudo helper gets an absolute state dir, resolved where the script runs.
            assert.equal(absoluteStateDir(".pcp-eval-state/ci/net", moved), path.join(moved, ".pcp-eval-state/ci/net"));
            assert.equal(absoluteStateDir(".pcp-eval-state/ci/net", gone), path.join(process.cwd(), ".pcp-eval-state/ci/net"));
            assert.equal(absoluteStateDir("/srv/net", moved), "/srv/net");
        } finally {
            fs.rmSync(moved, { recursive: true, force: true });
        }
    });
});
