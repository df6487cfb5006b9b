/**
 * host/grafana-password.sh against a real OpenSSH server on loopback (the
 * stand-in for the grafana VM's sshd): it reads the password file with the
 * given key and prints one JSON line; bad arguments and an unreadable file are
 * errors naming the fix. The password never appears in its command line.
 */
import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { run } from "../helpers/run";
import { sshdBinary, startSshd } from "../helpers/sshd";
import { requireTools } from "../helpers/tools";

const script = path.resolve(__dirname, "../../host/grafana-password.sh");

describe("grafana-password.sh", () => {
    it("reads the guest's password file over SSH with the stack's key", async (t) => {
        if (!requireTools(t, [["OpenSSH server (openssh-server)", () => existsSync(sshdBinary)], "ssh", "ssh-keygen"])) return;
        const sshd = await startSshd();
        try {
            const file = path.join(sshd.dir, "admin-password");
            const password = "3f2a9c0d1b4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f506";
            writeFileSync(file, `${password}\n`, { mode: 0o600 });
            const common = ["--host", sshd.host, "--port", String(sshd.port), "--user", sshd.user, "--identity", sshd.identityFile];
            const r = await run("bash", [script, "read", ...common, "--file", file, "--timeout", "10"]);
            assert.equal(r.code, 0, r.stderr);
            assert.deepEqual(JSON.parse(r.stdout.trim()), { password });
            assert.equal(r.stdout.trim().split("\n").length, 1, "one JSON line");
            assert.match(sshd.log(), /Accepted publickey/);

            const missing = await run("bash", [script, "read", ...common, "--file", path.join(sshd.dir, "nope"), "--timeout", "0"]);
            assert.equal(missing.code, 1);
            assert.match(missing.stderr, /cannot read .*nope on .*@127\.0\.0\.1:\d+ within 0 s: .*No such file/);
            assert.equal(missing.stdout, "");

            writeFileSync(file, "not a password $(x)\n");
            const odd = await run("bash", [script, "read", ...common, "--file", file, "--timeout", "0"]);
            assert.equal(odd.code, 1);
            assert.match(odd.stderr, /does not hold a password as the grafana VM writes it/);
            assert.ok(!odd.stderr.includes("$(x)"), "the file's content is not echoed");
        } finally {
            await sshd.stop();
        }
    });

    it("rejects bad arguments, naming the flag and the fix", async () => {
        const cases: Array<[string[], RegExp]> = [
            [["read", "--port", "22", "--user", "root"], /--host is required/],
            [["read", "--host", "h", "--port", "0", "--user", "root"], /--port must be a TCP port \(1-65535\), got '0'/],
            [["read", "--host", "h", "--port", "22", "--user", "Root;x"], /--user must be a login name/],
            [["read", "--host", "h", "--port", "22", "--user", "root", "--file", "/tmp/a b"], /--file must be an absolute path/],
            [["read", "--host", "h", "--port", "22", "--user", "root", "--identity", "/nonexistent/key"], /--identity '\/nonexistent\/key' is not a readable file/],
            [["fetch"], /unknown verb 'fetch'; use read/],
            [["read", "--bogus"], /unknown argument '--bogus'/],
        ];
        for (const [args, message] of cases) {
            const r = await run("bash", [script, ...args]);
            assert.equal(r.code, 1, args.join(" "));
            assert.match(r.stderr, message);
            assert.equal(r.stdout, "");
        }
    });
});
