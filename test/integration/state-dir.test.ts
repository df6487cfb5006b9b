/** host/state-dir.sh: the stack's state directory goes last, and never takes a file with it. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import { requireTools } from "../helpers/tools";

const script = path.resolve(__dirname, "../../host/state-dir.sh");
const root = fs.mkdtempSync(path.join(os.tmpdir(), "pe2-state-"));
after(() => fs.rmSync(root, { recursive: true, force: true }));

function run(args: string[]): { code: number; json: Record<string, unknown>; stderr: string } {
    const r = spawnSync("bash", [script, ...args], { encoding: "utf8" });
    const line = r.stdout.trim().split("\n").pop() ?? "";
    return { code: r.status ?? -1, json: line ? (JSON.parse(line) as Record<string, unknown>) : {}, stderr: r.stderr };
}

describe("state-dir.sh", () => {
    it("ensure makes the directory; clean removes it with its empty sub-directories", (t) => {
        if (!requireTools(t, ["jq", "find"])) return;
        const dir = path.join(root, "stack-a");
        assert.deepEqual(run(["ensure", "--dir", dir]).json, { dir, exists: true });
        fs.mkdirSync(path.join(dir, "vms", "eval"), { recursive: true });
        fs.mkdirSync(path.join(dir, "net"), { recursive: true });
        const cleaned = run(["clean", "--dir", dir]);
        assert.equal(cleaned.code, 0, cleaned.stderr);
        assert.deepEqual(cleaned.json, { dir, removed: true, left: [] });
        assert.equal(fs.existsSync(dir), false);
        assert.deepEqual(run(["clean", "--dir", dir]).json, { dir, removed: true, left: [] }, "clean twice is fine");
    });

    it("clean keeps every file, and the directories holding them, and says what is left", (t) => {
        if (!requireTools(t, ["jq", "find"])) return;
        const dir = path.join(root, "stack-b");
        fs.mkdirSync(path.join(dir, "vms", "eval"), { recursive: true });
        fs.mkdirSync(path.join(dir, "empty"), { recursive: true });
        const mine = path.join(dir, "vms", "notes.txt");
        fs.writeFileSync(mine, "a user's file\n");
        const cleaned = run(["clean", "--dir", dir]);
        assert.equal(cleaned.code, 0);
        assert.deepEqual(cleaned.json, { dir, removed: false, left: [mine] });
        assert.match(cleaned.stderr, /kept .*stack-b: it holds files pcp-eval did not remove/);
        assert.equal(fs.readFileSync(mine, "utf8"), "a user's file\n");
        assert.equal(fs.existsSync(path.join(dir, "vms", "eval")), false);
        assert.equal(fs.existsSync(path.join(dir, "empty")), false);
    });

    it("refuses a relative or missing --dir", (t) => {
        if (!requireTools(t, ["jq"])) return;
        const relative = run(["clean", "--dir", "relative/dir"]);
        assert.equal(relative.code, 1);
        assert.match(relative.stderr, /--dir must be absolute/);
        assert.match(run(["ensure"]).stderr, /--dir is required/);
    });
});
