/**
 * host/nix-build.sh against the real nix (Debian's 2.8) on the offline
 * fixture flake test/fixtures/flake-minimal.
 */
import assert from "node:assert/strict";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { nixBuildScript, nixTools, repoRoot, run, tempDir } from "../helpers/nix";
import { requireTools } from "../helpers/tools";

interface BuildOutput {
    storePath: string;
    outLink: string;
}
interface RemoveOutput {
    outLink: string;
    removed: boolean;
    legacyRemoved: boolean;
}

const fixture = path.join(repoRoot, "test", "fixtures", "flake-minimal", "flake.nix");
const system = process.arch === "arm64" ? "aarch64-linux" : "x86_64-linux";

function parseLine<T>(stdout: string): T {
    const lines = stdout.trim().split("\n");
    assert.equal(lines.length, 1, `expected one JSON line on stdout, got: ${stdout}`);
    return JSON.parse(lines[0]) as T;
}

describe("host/nix-build.sh", () => {
    let dir = "";
    let flakeDir = "";
    let stateDir = "";

    before(() => {
        dir = tempDir("pe3-nixbuild-");
        flakeDir = path.join(dir, "flake");
        stateDir = path.join(dir, "state");
        fs.mkdirSync(flakeDir);
        fs.copyFileSync(fixture, path.join(flakeDir, "flake.nix"));
        // A nonce makes this run's derivations new, so the first build really builds.
        fs.writeFileSync(path.join(flakeDir, "nonce"), crypto.randomUUID());
    });

    after(() => {
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    const build = (...args: string[]) => run("bash", [nixBuildScript, "build", ...args]);
    const remove = (...args: string[]) => run("bash", [nixBuildScript, "remove", ...args]);

    test("build creates the out-link and prints the store path; a second build is a no-op", async (t) => {
        if (!requireTools(t, [...nixTools, "bash"])) return;
        const link = path.join(stateDir, "hello");
        const first = await build("--out-link", link, "--installable", `path:${flakeDir}#hello`);
        assert.equal(first.code, 0, first.stderr);
        const out = parseLine<BuildOutput>(first.stdout);
        assert.equal(out.outLink, link);
        assert.match(out.storePath, /^\/nix\/store\/[a-z0-9]{32}-pcp-eval-fixture-hello$/);
        assert.equal(fs.readlinkSync(link), out.storePath);
        assert.match(fs.readFileSync(link, "utf8"), /hello from the fixture flake/);
        // Progress on stderr while it happens: what is being built, then the build's own log lines.
        assert.match(first.stderr, /nix-build\.sh: evaluating and building path:.*#hello/);
        assert.match(first.stderr, /pcp-eval-fixture-hello> a build log line/);

        const second = await build("--out-link", link, "--installable", `path:${flakeDir}#hello`);
        assert.equal(second.code, 0, second.stderr);
        assert.deepEqual(parseLine<BuildOutput>(second.stdout), out);
        assert.doesNotMatch(second.stderr, /building '/, "an unchanged attribute must not be rebuilt");
        assert.equal(fs.readlinkSync(link), out.storePath);
    });

    test("--expected: a store path already built gets its out-link without an evaluation; one not built is built", async (t) => {
        if (!requireTools(t, [...nixTools, "bash"])) return;
        const first = path.join(stateDir, "expected-source");
        const built = await build("--out-link", first, "--installable", `path:${flakeDir}#hello`);
        assert.equal(built.code, 0, built.stderr);
        const storePath = parseLine<BuildOutput>(built.stdout).storePath;

        // An attribute that fails to evaluate proves nothing is evaluated: the link comes from the store path.
        const link = path.join(stateDir, "expected");
        const fast = await build("--out-link", link, "--installable", `path:${flakeDir}#no-such-attr`, "--expected", storePath);
        assert.equal(fast.code, 0, fast.stderr);
        assert.deepEqual(parseLine<BuildOutput>(fast.stdout), { storePath, outLink: link });
        assert.equal(fs.readlinkSync(link), storePath);
        assert.match(fast.stderr, /in the store already; out-link made without evaluating again/);
        assert.doesNotMatch(fast.stderr, /evaluating and building/);
        // A GC root like any out-link: removing the first link leaves the path alive.
        assert.equal((await remove("--out-link", first)).code, 0);
        const gc = await run("nix-store", ["--delete", storePath]);
        assert.notEqual(gc.code, 0, "the store path is still a root's, so nix refuses to delete it");
        assert.ok(fs.existsSync(storePath));

        // A path not in the store: nix builds as without --expected (and fails here, the attribute being absent).
        const missing = storePath.replace(/\/([a-z0-9]{32})-/, (_m, hash: string) => `/${hash.split("").reverse().join("")}-`);
        const slow = await build("--out-link", path.join(stateDir, "expected-missing"), "--installable", `path:${flakeDir}#no-such-attr`, "--expected", missing);
        assert.notEqual(slow.code, 0);
        assert.match(slow.stderr, /evaluating and building/);

        const bad = await build("--out-link", path.join(stateDir, "expected-bad"), "--installable", `path:${flakeDir}#hello`, "--expected", "/tmp/not-a-store-path");
        assert.notEqual(bad.code, 0);
        assert.match(bad.stderr, /--expected '\/tmp\/not-a-store-path' is not a store path under \/nix\/store/);
    });

    test("remove deletes only the out-link and is idempotent", async (t) => {
        if (!requireTools(t, [...nixTools, "bash"])) return;
        const link = path.join(stateDir, "to-remove");
        const neighbour = path.join(stateDir, "neighbour.txt");
        const built = await build("--out-link", link, "--installable", `path:${flakeDir}#hello`);
        assert.equal(built.code, 0, built.stderr);
        const storePath = parseLine<BuildOutput>(built.stdout).storePath;
        fs.writeFileSync(neighbour, "keep me");

        const first = await remove("--out-link", link);
        assert.equal(first.code, 0, first.stderr);
        assert.deepEqual(parseLine<RemoveOutput>(first.stdout), { outLink: link, removed: true, legacyRemoved: false });
        assert.equal(fs.existsSync(link), false);
        assert.equal(fs.existsSync(storePath), true, "remove must not touch the store path itself");
        assert.equal(fs.readFileSync(neighbour, "utf8"), "keep me");

        const again = await remove("--out-link", link);
        assert.equal(again.code, 0, again.stderr);
        assert.deepEqual(parseLine<RemoveOutput>(again.stdout), { outLink: link, removed: false, legacyRemoved: false });
    });

    test("removing a generation's link also removes the one out-link an earlier pcp-eval kept for it, and nothing else", async (t) => {
        if (!requireTools(t, [...nixTools, "bash"])) return;
        const legacy = path.join(stateDir, "runner");
        const generation = `${legacy}-0123456789ab`;
        const built = await build("--out-link", legacy, "--installable", `path:${flakeDir}#hello`);
        assert.equal(built.code, 0, built.stderr);
        const storePath = parseLine<BuildOutput>(built.stdout).storePath;
        fs.symlinkSync(storePath, generation);
        // Not out-links of ours: a plain file, and a link that does not point into the store.
        const plain = path.join(stateDir, "notes");
        fs.writeFileSync(plain, "keep me");
        fs.symlinkSync(plain, path.join(stateDir, "foreign"));

        const r = await remove("--out-link", generation);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(parseLine<RemoveOutput>(r.stdout), { outLink: generation, removed: true, legacyRemoved: true });
        assert.equal(fs.existsSync(generation), false);
        assert.equal(fs.existsSync(legacy), false, "the earlier out-link is gone too");
        assert.match(r.stderr, /removed .*\/runner, the out-link an earlier pcp-eval kept/);
        assert.equal(fs.existsSync(storePath), true, "the store path itself stays");

        for (const other of ["notes", "foreign"]) {
            const link = path.join(stateDir, `${other}-0123456789ab`);
            fs.symlinkSync(storePath, link);
            const o = await remove("--out-link", link);
            assert.equal(o.code, 0, o.stderr);
            assert.deepEqual(parseLine<RemoveOutput>(o.stdout), { outLink: link, removed: true, legacyRemoved: false }, other);
        }
        assert.equal(fs.readFileSync(plain, "utf8"), "keep me");
        assert.equal(fs.readlinkSync(path.join(stateDir, "foreign")), plain);
    });

    test("remove refuses a path that is not an out-link", async (t) => {
        if (!requireTools(t, [...nixTools, "bash"])) return;
        const file = path.join(dir, "plain-file");
        fs.writeFileSync(file, "data");
        const r = await remove("--out-link", file);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /not a symlink; refusing/);
        assert.equal(fs.readFileSync(file, "utf8"), "data");

        const foreign = path.join(dir, "foreign-link");
        fs.symlinkSync(file, foreign);
        const f = await remove("--out-link", foreign);
        assert.notEqual(f.code, 0);
        assert.match(f.stderr, /not into \/nix\/store; refusing/);
        assert.equal(fs.lstatSync(foreign).isSymbolicLink(), true);
    });

    test("a bad attribute fails clearly and leaves no out-link", async (t) => {
        if (!requireTools(t, [...nixTools, "bash"])) return;
        const link = path.join(stateDir, "bad-attr");
        const r = await build("--out-link", link, "--installable", `path:${flakeDir}#no-such-attr`);
        assert.notEqual(r.code, 0);
        assert.equal(r.stdout, "", "nothing on stdout when the build fails");
        assert.match(r.stderr, /does not provide attribute .*no-such-attr/);
        assert.match(r.stderr, /nix-build\.sh: build of path:.*#no-such-attr failed/);
        assert.equal(fs.existsSync(link), false);
    });

    test("a failing builder fails clearly and keeps the previous out-link", async (t) => {
        if (!requireTools(t, [...nixTools, "bash"])) return;
        const link = path.join(stateDir, "keeps-old");
        const good = await build("--out-link", link, "--installable", `path:${flakeDir}#hello`);
        assert.equal(good.code, 0, good.stderr);
        const before = fs.readlinkSync(link);

        const r = await build("--out-link", link, "--installable", `path:${flakeDir}#fails`);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /this build fails on purpose/);
        assert.match(r.stderr, /nix-build\.sh: build of .*#fails failed/);
        assert.equal(fs.readlinkSync(link), before);
    });

    test("--expr with builtins.getFlake needs --impure and then builds", async (t) => {
        if (!requireTools(t, [...nixTools, "bash"])) return;
        const expr = `(builtins.getFlake "path:${flakeDir}").packages.${system}.hello`;
        const pureLink = path.join(stateDir, "expr-pure");
        const pure = await build("--out-link", pureLink, "--expr", expr);
        assert.notEqual(pure.code, 0);
        assert.match(pure.stderr, /needs --impure/);
        assert.equal(fs.existsSync(pureLink), false);

        const link = path.join(stateDir, "expr");
        const r = await build("--out-link", link, "--impure", "--expr", expr);
        assert.equal(r.code, 0, r.stderr);
        const out = parseLine<BuildOutput>(r.stdout);
        assert.match(out.storePath, /-pcp-eval-fixture-hello$/);
        assert.equal(fs.readlinkSync(link), out.storePath);

        const viaAttr = await build("--out-link", path.join(stateDir, "attr"), "--installable", `path:${flakeDir}#hello`);
        assert.equal(parseLine<BuildOutput>(viaAttr.stdout).storePath, out.storePath, "same derivation either way");
    });

    test("--timeout stops a build that takes too long and leaves no out-link", async (t) => {
        if (!requireTools(t, [...nixTools, "bash", "timeout"])) return;
        const link = path.join(stateDir, "slow");
        const r = await build("--out-link", link, "--timeout", "1", "--installable", `path:${flakeDir}#slow`);
        assert.equal(r.code, 124, r.stderr);
        assert.match(r.stderr, /timed out after 1s/);
        assert.equal(fs.existsSync(link), false);
    });

    test("bad arguments are refused with the field named", async (t) => {
        if (!requireTools(t, [...nixTools, "bash"])) return;
        const cases: Array<[string[], RegExp]> = [
            [[], /--out-link PATH is required/],
            [["--out-link", path.join(dir, "x")], /--installable REF#ATTR or --expr NIX_EXPR is required/],
            [["--out-link", path.join(dir, "x"), "--installable", `path:${flakeDir}`], /has no '#ATTR'/],
            [["--out-link", path.join(dir, "x"), "--installable", "a#b", "--expr", "1"], /either --installable or --expr, not both/],
            [["--out-link", path.join(dir, "x"), "--installable", "a#b", "--timeout", "soon"], /--timeout must be a whole number/],
            [["--out-link", path.join(dir, "x"), "--bogus"], /unknown argument '--bogus'/],
        ];
        for (const [args, message] of cases) {
            const r = await build(...args);
            assert.notEqual(r.code, 0, `expected failure for ${args.join(" ")}`);
            assert.match(r.stderr, message);
            assert.equal(r.stdout, "");
        }
        const verb = await run("bash", [nixBuildScript, "frobnicate"]);
        assert.notEqual(verb.code, 0);
        assert.match(verb.stderr, /unknown verb 'frobnicate'/);

        const file = path.join(dir, "occupied");
        fs.writeFileSync(file, "x");
        const occupied = await build("--out-link", file, "--installable", `path:${flakeDir}#hello`);
        assert.notEqual(occupied.code, 0);
        assert.match(occupied.stderr, /exists and is not a symlink/);
        assert.equal(fs.readFileSync(file, "utf8"), "x");
    });

    test("is shellcheck-clean", async (t) => {
        if (!requireTools(t, ["shellcheck"])) return;
        const r = await run("shellcheck", [nixBuildScript]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
    });
});
