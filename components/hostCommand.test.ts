/**
 * Refresh and repair of host state, and replacement order, for both host
 * command backends, against the real host/nix-build.sh with a stand-in nix
 * (NIX) and a store of the test's own (NIX_STORE_DIR): no Nix needed.
 */
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { loadSerializedProvider } from "../test/helpers/dynamicProvider";
import { requireTools } from "../test/helpers/tools";
import { driftOf, hostCommandProvider, HostCommandInputs, HostCommandOutputs, hostStateProvider } from "./hostCommand";
import { buildKey } from "./nixBuild";
import { scriptCommand } from "./shell";

const projectDir = path.resolve(__dirname, "..");
const needs = ["bash", "jq", "timeout", "sha256sum"];

describe("driftOf", () => {
    it("names each key of the check whose value differs from the recorded line", () => {
        assert.equal(driftOf('{"storePath":"/nix/store/a","outLink":"l"}', '{"storePath":"/nix/store/a","outLink":"l"}'), "");
        assert.equal(driftOf('noise\n{"storePath":"/nix/store/a","outLink":"l"}', '{"storePath":null,"outLink":"l"}'), 'storePath: recorded "/nix/store/a", now null');
        // Keys only the recorded line has (created, loaded) are not compared.
        assert.equal(driftOf('{"publicKey":"k","created":true}', '{"publicKey":"k"}'), "");
    });
});

describe("host state: refresh sees a deleted out-link, the next up restores it, replacements keep a root", () => {
    let dir = "";
    let store = "";
    const saved = { NIX: process.env.NIX, NIX_STORE_DIR: process.env.NIX_STORE_DIR };

    before(() => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe15-hoststate-"));
        store = path.join(dir, "store");
        fs.mkdirSync(store);
        // Stand-in nix: `build --json --out-link L ... --expr E`: a store path named by E's hash, linked at L.
        const nix = path.join(dir, "nix");
        fs.writeFileSync(
            nix,
            `#!/usr/bin/env bash
set -euo pipefail
link="" expr=""
while (($# > 0)); do
    case "$1" in
        --out-link) link="$2"; shift 2 ;;
        --expr) expr="$2"; shift 2 ;;
        *) shift ;;
    esac
done
out="${store}/$(printf '%s' "$expr" | sha256sum | cut -c1-32)-fake"
mkdir -p "$out"
ln -sfn "$out" "$link"
printf '[{"outputs":{"out":"%s"}}]\\n' "$out"
`,
            { mode: 0o755 },
        );
        process.env.NIX = nix;
        process.env.NIX_STORE_DIR = store;
    });

    after(() => {
        for (const [k, v] of Object.entries(saved)) {
            if (v === undefined) delete process.env[k];
            else process.env[k] = v;
        }
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    const inputsFor = (link: string, expr = "runner"): HostCommandInputs => {
        const build = scriptCommand("nix-build.sh", "build", { "out-link": link, expr, impure: true, timeout: 60 });
        return {
            create: build,
            update: build,
            delete: scriptCommand("nix-build.sh", "remove", { "out-link": link }),
            check: scriptCommand("nix-build.sh", "status", { "out-link": link }),
            dir: projectDir,
            triggers: [expr],
        };
    };

    it("dynamic HostCommand: read reports the lost out-link, diff plans an update (no replace), update restores it", async (t) => {
        if (!requireTools(t, needs)) return;
        const provider = await loadSerializedProvider(hostCommandProvider);
        const link = path.join(dir, "dyn", "runner-abc");
        const inputs = inputsFor(link);
        const created = await provider.create!(inputs);
        const outs = created.outs as HostCommandOutputs;
        const target = fs.readlinkSync(link);
        assert.equal((await provider.read!(created.id, outs)).props?.live, "ok");

        fs.unlinkSync(link);
        const read = await provider.read!(created.id, outs);
        const drifted = read.props as HostCommandOutputs;
        assert.equal(drifted.live, "degraded");
        assert.match(drifted.drift ?? "", /storePath: recorded ".*", now null/);
        const diff = await provider.diff!(created.id, drifted, inputs);
        assert.equal(diff.changes, true);
        assert.deepEqual(diff.replaces, []);

        const updated = await provider.update!(created.id, drifted, inputs);
        assert.equal(fs.readlinkSync(link), target, "the out-link points at the same store path again");
        assert.equal((updated.outs as HostCommandOutputs).stdout, outs.stdout, "nothing downstream changes");
        assert.equal((await provider.diff!(created.id, updated.outs as HostCommandOutputs, inputs)).changes, false);
    });

    it("a failing check surfaces its error in refresh", async (t) => {
        if (!requireTools(t, needs)) return;
        const provider = await loadSerializedProvider(hostCommandProvider);
        const outs = { ...inputsFor(path.join(dir, "x")), check: "echo 'status: cannot read the state dir' >&2; exit 3", stdout: "{}", stderr: "" };
        await assert.rejects(provider.read!("id", outs), /exit 3[\s\S]*cannot read the state dir/);
    });

    it("local.Command's HostState: read reports the lost out-link, update runs the repair and carries its output", async (t) => {
        if (!requireTools(t, needs)) return;
        const provider = await loadSerializedProvider(hostStateProvider);
        const link = path.join(dir, "cmd", "runner-abc");
        const inputs = inputsFor(link);
        // What local.Command's create did.
        const { hostCommandProvider: direct } = await import("./hostCommand");
        const recorded = ((await direct.create!(inputs)).outs as HostCommandOutputs).stdout;
        const state = { check: inputs.check!, repair: inputs.update!, dir: projectDir, recorded };
        const created = await provider.create!(state);
        fs.unlinkSync(link);
        const read = await provider.read!(created.id, created.outs);
        assert.equal(read.props?.live, "degraded");
        const diff = await provider.diff!(created.id, read.props!, state);
        assert.equal(diff.changes, true);
        assert.deepEqual(diff.replaces, []);
        const updated = await provider.update!(created.id, read.props!, state);
        assert.ok(fs.existsSync(link), "the repair made the out-link again");
        assert.equal(updated.outs?.stdout, recorded);
        assert.equal(updated.outs?.live, "ok");
    });

    /** One replacement of a build whose expression changed, in the given order; the out-links left after it. */
    async function replace(order: "create-before-delete" | "delete-before-replace", fixedLink: boolean): Promise<string[]> {
        const provider = await loadSerializedProvider(hostCommandProvider);
        const base = path.join(dir, `${order}-${fixedLink ? "fixed" : "keyed"}`, "runner");
        const linkOf = (expr: string) => (fixedLink ? base : `${base}-${buildKey(`/nix/store/${expr}`)}` /* keyed on the evaluated store path, here one per expression */);
        const old = await provider.create!(inputsFor(linkOf("old"), "old"));
        const fresh = inputsFor(linkOf("new"), "new");
        if (order === "create-before-delete") {
            await provider.create!(fresh);
            await provider.delete!(old.id, old.outs as HostCommandOutputs);
        } else {
            await provider.delete!(old.id, old.outs as HostCommandOutputs);
            await provider.create!(fresh);
        }
        return fs.readdirSync(path.dirname(base));
    }

    it("a replacement keeps the new generation's GC root in both orders (and a fixed out-link lost it in one)", async (t) => {
        if (!requireTools(t, needs)) return;
        for (const order of ["create-before-delete", "delete-before-replace"] as const) {
            const left = await replace(order, false);
            assert.equal(left.length, 1, `${order}: ${left.join(", ")}`);
            assert.match(left[0]!, /^runner-[0-9a-f]{12}$/);
        }
        // Why the key: with one path for every generation, local.Command's default order deletes the new root.
        assert.deepEqual(await replace("create-before-delete", true), []);
    });
});
