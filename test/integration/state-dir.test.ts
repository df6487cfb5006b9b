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
        assert.equal((fs.statSync(dir).mode & 0o777).toString(8), "700", "made for the user alone");
        fs.mkdirSync(path.join(dir, "vms", "eval"), { recursive: true });
        fs.mkdirSync(path.join(dir, "net"), { recursive: true });
        const cleaned = run(["clean", "--dir", dir]);
        assert.equal(cleaned.code, 0, cleaned.stderr);
        assert.deepEqual(cleaned.json, { dir, removed: true, left: [] });
        assert.equal(fs.existsSync(dir), false);
        assert.deepEqual(run(["clean", "--dir", dir]).json, { dir, removed: true, left: [] }, "clean twice is fine");
    });

    it("an unknown verb names the two it has, and touches nothing", () => {
        const dir = path.join(root, "stack-verb");
        const r = run(["remove", "--dir", dir]);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /unknown verb 'remove'; use ensure or clean/);
        assert.equal(fs.existsSync(dir), false);
    });

    it("clean keeps every file, and the directories holding them, and says what is left", (t) => {
        if (!requireTools(t, ["jq", "find"])) return;
        const dir = path.join(root, "stack-b");
        assert.equal(run(["ensure", "--dir", dir]).code, 0);
        fs.mkdirSync(path.join(dir, "vms", "eval"), { recursive: true });
        fs.mkdirSync(path.join(dir, "net"), { recursive: true });
        const mine = path.join(dir, "vms", "notes.txt");
        fs.writeFileSync(mine, "a user's file\n");
        const cleaned = run(["clean", "--dir", dir]);
        assert.equal(cleaned.code, 0);
        assert.deepEqual(cleaned.json, { dir, removed: false, left: [mine] });
        assert.match(cleaned.stderr, /kept .*stack-b: it holds files pcp-eval did not remove/);
        assert.equal(fs.readFileSync(mine, "utf8"), "a user's file\n");
        assert.equal(fs.existsSync(path.join(dir, "vms", "eval")), false);
        assert.equal(fs.existsSync(path.join(dir, "net")), false);
    });

    it("clean removes only what pcp-eval made: a stateDir pointed at a home-like tree keeps its empty directories", (t) => {
        if (!requireTools(t, ["jq", "find"])) return;
        const home = path.join(root, "home-like");
        const foreign = [".git/refs/tags", "Downloads", "projects/old/empty", "vms-notes"].map((d) => path.join(home, d));
        for (const d of foreign) fs.mkdirSync(d, { recursive: true });
        assert.equal(run(["ensure", "--dir", home]).code, 0);
        // What the stack's parts make below it.
        for (const d of ["vms/eval", "ssh", "net", "image"]) fs.mkdirSync(path.join(home, d), { recursive: true });
        const cleaned = run(["clean", "--dir", home]);
        assert.equal(cleaned.code, 0, cleaned.stderr);
        for (const d of foreign) assert.ok(fs.existsSync(d), `${d} was removed`);
        for (const d of ["vms", "ssh", "net", "image"]) assert.equal(fs.existsSync(path.join(home, d)), false, `${d} is ours and was kept`);
        assert.ok(fs.existsSync(home), "a directory that existed before ensure is not removed");
        assert.deepEqual(fs.readdirSync(home).sort(), [".git", "Downloads", "projects", "vms-notes"]);
    });

    it("ensure records the parents it made, and clean removes exactly those", (t) => {
        if (!requireTools(t, ["jq", "find"])) return;
        const base = path.join(root, "nest");
        fs.mkdirSync(path.join(base, "sibling-empty"), { recursive: true });
        const dir = path.join(base, "a", "b", "c");
        assert.equal(run(["ensure", "--dir", dir]).code, 0);
        assert.equal(run(["ensure", "--dir", dir]).code, 0, "ensure twice keeps the first record");
        const cleaned = run(["clean", "--dir", dir]);
        assert.equal(cleaned.code, 0, cleaned.stderr);
        assert.deepEqual(fs.readdirSync(base), ["sibling-empty"]);
    });

    it("a checkout moved with its state: clean removes the directories ensure made under their new place, not the renamed checkout", (t) => {
        if (!requireTools(t, ["jq", "find"])) return;
        const base = path.join(root, "moves");
        assert.equal(run(["ensure", "--dir", path.join(base, "checkout", ".pcp-eval-state", "ci")]).code, 0);
        fs.renameSync(path.join(base, "checkout"), path.join(base, "moved"));
        const cleaned = run(["clean", "--dir", path.join(base, "moved", ".pcp-eval-state", "ci")]);
        assert.equal(cleaned.code, 0, cleaned.stderr);
        assert.equal(cleaned.json.removed, true);
        // ensure made "checkout" too, but under another name it is the user's now.
        assert.deepEqual(fs.readdirSync(base), ["moved"]);
        assert.deepEqual(fs.readdirSync(path.join(base, "moved")), []);
    });

    it("a record edited to name a directory outside the state directory's line is ignored", (t) => {
        if (!requireTools(t, ["jq", "find"])) return;
        const victim = path.join(root, "victim-empty");
        fs.mkdirSync(victim);
        const dir = path.join(root, "stack-c");
        assert.equal(run(["ensure", "--dir", dir]).code, 0);
        fs.writeFileSync(path.join(dir, ".pcp-eval-made"), JSON.stringify({ made: [victim, dir] }));
        assert.equal(run(["clean", "--dir", dir]).code, 0);
        assert.ok(fs.existsSync(victim));
        assert.equal(fs.existsSync(dir), false);
    });

    it("refuses a relative or missing --dir", (t) => {
        if (!requireTools(t, ["jq"])) return;
        const relative = run(["clean", "--dir", "relative/dir"]);
        assert.equal(relative.code, 1);
        assert.match(relative.stderr, /--dir must be absolute/);
        assert.match(run(["ensure"]).stderr, /--dir is required/);
    });
});
