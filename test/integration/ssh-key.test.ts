/** host/ssh-key.sh: the VMs trust the key it reports, so its JSON and the key it reuses must be what they seem. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import { isRoot, requireTools } from "../helpers/tools";

const script = path.resolve(__dirname, "../../host/ssh-key.sh");
const root = fs.mkdtempSync(path.join(os.tmpdir(), "pe20-sshkey-"));
after(() => fs.rmSync(root, { recursive: true, force: true }));

function run(args: string[]): { code: number; stdout: string; stderr: string } {
    const r = spawnSync("bash", [script, ...args], { encoding: "utf8" });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe("ssh-key.sh", () => {
    it("builds its JSON with a JSON tool: a directory name holding JSON cannot replace the public key", (t) => {
        if (!requireTools(t, ["jq", "ssh-keygen"])) return;
        const dir = path.join(root, 'x","publicKey":"ssh-ed25519 AAAAEVIL');
        const r = run(["ensure", "--dir", dir]);
        assert.equal(r.code, 0, r.stderr);
        const lines = r.stdout.trim().split("\n");
        assert.equal(lines.length, 1);
        const out = JSON.parse(lines[0]!) as { publicKey: string; privateKeyPath: string; created: boolean };
        assert.equal(out.publicKey, fs.readFileSync(path.join(dir, "id_ed25519.pub"), "utf8").trim());
        assert.equal(out.privateKeyPath, path.join(dir, "id_ed25519"));
        assert.equal(out.created, true);
        const removed = run(["remove", "--dir", dir]);
        assert.equal(removed.code, 0, removed.stderr);
        assert.deepEqual(JSON.parse(removed.stdout), { privateKeyPath: path.join(dir, "id_ed25519"), removed: true });
    });

    it("status is valid JSON with a quote and a backslash in the directory and the key comment, before and after ensure", (t) => {
        if (!requireTools(t, ["jq", "ssh-keygen"])) return;
        const dir = path.join(root, 'q"uo\\te');
        const key = path.join(dir, "id_ed25519");
        const status = (): { publicKey: string | null; privateKeyPath: string } => {
            const r = run(["status", "--dir", dir]);
            assert.equal(r.code, 0, r.stderr);
            assert.equal(r.stdout.trim().split("\n").length, 1, r.stdout);
            return JSON.parse(r.stdout) as { publicKey: string | null; privateKeyPath: string };
        };
        assert.deepEqual(status(), { publicKey: null, privateKeyPath: key });
        const comment = 'me "at" C:\\home';
        assert.equal(run(["ensure", "--dir", dir, "--comment", comment]).code, 0);
        const now = status();
        assert.equal(now.privateKeyPath, key);
        assert.equal(now.publicKey, fs.readFileSync(`${key}.pub`, "utf8").trim());
        assert.ok(now.publicKey?.endsWith(` ${comment}`), now.publicKey ?? "null");
    });

    it("reuses an existing key only when it is this user's and not readable by others", (t) => {
        if (!requireTools(t, ["jq", "ssh-keygen"])) return;
        const dir = path.join(root, "loose");
        assert.equal(run(["ensure", "--dir", dir]).code, 0);
        const key = path.join(dir, "id_ed25519");
        fs.chmodSync(key, 0o644);
        const loose = run(["ensure", "--dir", dir]);
        assert.notEqual(loose.code, 0);
        assert.equal(loose.stdout, "");
        assert.match(loose.stderr, /id_ed25519 has mode 644.*fix: chmod 600/);
        fs.chmodSync(key, 0o600);
        assert.equal(run(["ensure", "--dir", dir]).code, 0, "a 0600 key of ours is reused");
        const again = JSON.parse(run(["ensure", "--dir", dir]).stdout) as { created: boolean };
        assert.equal(again.created, false);
    });

    it("refuses an existing key owned by another user", (t) => {
        if (!requireTools(t, ["jq", "ssh-keygen", ["root (to give the key to another user)", isRoot]])) return;
        const dir = path.join(root, "foreign");
        assert.equal(run(["ensure", "--dir", dir]).code, 0);
        fs.chownSync(path.join(dir, "id_ed25519"), 65534, 65534);
        const r = run(["ensure", "--dir", dir]);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /id_ed25519 is owned by uid 65534, not by .*fix: /);
    });
});
