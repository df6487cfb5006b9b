/**
 * Refresh and repair of host state, and replacement order, for both host
 * command backends, against the real host/nix-build.sh with a stand-in nix
 * (NIX) and a store of the test's own (NIX_STORE_DIR): no Nix needed. The
 * resources are the provider plugin's (provider/), driven over gRPC as the
 * engine drives them.
 */
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { startProviderPlugin, type PluginResource, type ProviderPlugin } from "../test/helpers/providerPlugin";
import { requireTools } from "../test/helpers/tools";
import type { HostCommandInputs, HostCommandOutputs, HostStateOutputs } from "./hostCommand";
import { buildKey } from "./nixBuild";
import { scriptCommand } from "./shell";

const projectDir = path.resolve(__dirname, "..");
const needs = ["bash", "jq", "timeout", "sha256sum"];

let plugin: ProviderPlugin;
let hostCommand: PluginResource<HostCommandOutputs>;
let hostState: PluginResource<HostStateOutputs>;
let dir = "";

before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe15-hoststate-"));
    const store = path.join(dir, "store");
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
    // The plugin's host scripts (nix-build.sh) find the stand-in nix and the test's store.
    plugin = await startProviderPlugin({ env: { ...process.env, NIX: nix, NIX_STORE_DIR: store } });
    hostCommand = plugin.resource<HostCommandOutputs>("HostCommand");
    hostState = plugin.resource<HostStateOutputs>("HostState");
});

after(async () => {
    await plugin?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe("HostCommand: drift is each key of the check whose value differs from the recorded last line", () => {
    /** What read reports for a recorded stdout and a check printing `now`. */
    async function driftOf(recorded: string, now: string): Promise<{ live?: string; drift?: string }> {
        const outs = { create: "true", dir: "/tmp", check: `printf '%s\\n' '${now}'`, stdout: recorded, stderr: "", live: "ok", drift: "" };
        const read = await hostCommand.read("id", outs);
        assert.equal(read.id, "id");
        return { live: read.props?.live, drift: read.props?.drift };
    }

    it("names the keys that differ, as recorded and now; keys only the recorded line has are not compared", async () => {
        assert.deepEqual(await driftOf('{"storePath":"/nix/store/a","outLink":"l"}', '{"storePath":"/nix/store/a","outLink":"l"}'), { live: "ok", drift: "" });
        assert.deepEqual(await driftOf('noise\n{"storePath":"/nix/store/a","outLink":"l"}', '{"storePath":null,"outLink":"l"}'), {
            live: "degraded",
            drift: 'storePath: recorded "/nix/store/a", now null',
        });
        // Keys only the recorded line has (created, loaded) are not compared.
        assert.deepEqual(await driftOf('{"publicKey":"k","created":true}', '{"publicKey":"k"}'), { live: "ok", drift: "" });
    });

    it("check refuses a missing or non-text command, naming the property", async () => {
        assert.deepEqual((await hostCommand.check({}, { create: "true", dir: "/tmp" })).failures, []);
        assert.deepEqual((await hostCommand.check({}, { create: "", check: 3 })).failures, [
            { property: "create", reason: "must not be empty" },
            { property: "dir", reason: "is required" },
            { property: "check", reason: "must be a string, not 3" },
        ]);
    });
});

describe("host state: refresh sees a deleted out-link, the next up restores it, replacements keep a root", () => {
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

    it("HostCommand: read reports the lost out-link, diff plans an update (no replace), update restores it", async (t) => {
        if (!requireTools(t, needs)) return;
        const provider = hostCommand;
        const link = path.join(dir, "dyn", "runner-abc");
        const inputs = inputsFor(link);
        const created = await provider.create(inputs);
        const outs = created.outs;
        const target = fs.readlinkSync(link);
        assert.equal((await provider.read(created.id, outs)).props?.live, "ok");

        fs.unlinkSync(link);
        const read = await provider.read(created.id, outs);
        const drifted = read.props!;
        assert.equal(drifted.live, "degraded");
        assert.match(drifted.drift ?? "", /storePath: recorded ".*", now null/);
        const diff = await provider.diff(created.id, drifted, inputs);
        assert.equal(diff.changes, true);
        assert.deepEqual(diff.replaces, []);

        const updated = await provider.update(created.id, drifted, inputs);
        assert.equal(fs.readlinkSync(link), target, "the out-link points at the same store path again");
        assert.equal(updated.outs.stdout, outs.stdout, "nothing downstream changes");
        assert.equal(updated.outs.live, "ok");
        assert.equal((await provider.diff(created.id, updated.outs, inputs)).changes, false);
    });

    it("a failing check surfaces its error in refresh", async (t) => {
        if (!requireTools(t, needs)) return;
        const provider = hostCommand;
        const outs = { ...inputsFor(path.join(dir, "x")), check: "echo 'status: cannot read the state dir' >&2; exit 3", stdout: "{}", stderr: "" };
        await assert.rejects(provider.read("id", outs), /exit 3[\s\S]*cannot read the state dir/);
    });

    it("local.Command's HostState: read reports the lost out-link, update runs the repair and carries its output", async (t) => {
        if (!requireTools(t, needs)) return;
        const provider = hostState;
        const link = path.join(dir, "cmd", "runner-abc");
        const inputs = inputsFor(link);
        // What local.Command's create did.
        const recorded = (await hostCommand.create(inputs)).outs.stdout;
        const state = { check: inputs.check!, repair: inputs.update!, dir: projectDir, recorded };
        const created = await provider.create(state);
        fs.unlinkSync(link);
        const read = await provider.read(created.id, created.outs);
        assert.equal(read.props?.live, "degraded");
        const diff = await provider.diff(created.id, read.props!, state);
        assert.equal(diff.changes, true);
        assert.deepEqual(diff.replaces, []);
        const updated = await provider.update(created.id, read.props!, state);
        assert.ok(fs.existsSync(link), "the repair made the out-link again");
        assert.equal(updated.outs.stdout, recorded);
        assert.equal(updated.outs.live, "ok");
    });

    /** One replacement of a build whose expression changed, in the given order; the out-links left after it. */
    async function replace(order: "create-before-delete" | "delete-before-replace", fixedLink: boolean): Promise<string[]> {
        const provider = hostCommand;
        const base = path.join(dir, `${order}-${fixedLink ? "fixed" : "keyed"}`, "runner");
        const linkOf = (expr: string) => (fixedLink ? base : `${base}-${buildKey(`/nix/store/${expr}`)}` /* keyed on the evaluated store path, here one per expression */);
        const old = await provider.create(inputsFor(linkOf("old"), "old"));
        const fresh = inputsFor(linkOf("new"), "new");
        if (order === "create-before-delete") {
            await provider.create(fresh);
            await provider.delete(old.id, old.outs);
        } else {
            await provider.delete(old.id, old.outs);
            await provider.create(fresh);
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
