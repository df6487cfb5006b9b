import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { publicKeyOnDisk } from "./sshKey";

describe("publicKeyOnDisk (what a preview knows of a keygen it plans to update)", () => {
    it("reads the public key of a complete pair as ssh-key.sh prints it; a half pair or none is unknown", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe15-sshkey-"));
        try {
            const key = path.join(dir, "id_ed25519");
            assert.equal(publicKeyOnDisk(key), undefined);
            fs.writeFileSync(`${key}.pub`, "ssh-ed25519 AAAAC3Nza pcp-eval-ci\n");
            assert.equal(publicKeyOnDisk(key), undefined, "no private key: the update makes a new pair");
            fs.writeFileSync(key, "private\n", { mode: 0o600 });
            assert.equal(publicKeyOnDisk(key), "ssh-ed25519 AAAAC3Nza pcp-eval-ci");
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
