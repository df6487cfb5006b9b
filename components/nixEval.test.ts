/**
 * The rebuild decision: the store path Nix would build, evaluated before the
 * build. With the real nix (Debian's 2.8 here, offline) on temporary copies of
 * flakes: an edit Nix sees changes the path whatever the file's extension
 * (inside the flake, or read by the ci fixture flake through an impure path),
 * an edit it ignores does not, and a revert gives the earlier path back.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import { evaluateStorePaths, flakeOutputExpression, flakeRef, parseStorePaths, storePathsExpression } from "./nixEval";
import { offlineNixConfig } from "../test/helpers/nix";
import { requireTools } from "../test/helpers/tools";

const repoRoot = path.resolve(__dirname, "..");
process.env.NIX_CONFIG = offlineNixConfig;

const temps: string[] = [];
function tempDir(): string {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "pe19-eval-"));
    temps.push(d);
    return d;
}
after(() => {
    for (const d of temps) fs.rmSync(d, { recursive: true, force: true });
});

function append(file: string, text: string): () => void {
    const before = fs.readFileSync(file);
    fs.appendFileSync(file, text);
    return () => fs.writeFileSync(file, before);
}

describe("storePathsExpression / flakeOutputExpression", () => {
    it("names each expression's outPath in one attribute set, quoted so no name or string can inject Nix", () => {
        assert.equal(storePathsExpression({ "vm-b": "B", "pcp-image": "A" }), `{ "pcp-image" = (A).outPath; "vm-b" = (B).outPath; }`);
        assert.equal(storePathsExpression({ 'x"${y}': "E" }), `{ "x\\"\\\${y}" = (E).outPath; }`);
        assert.throws(() => storePathsExpression({}), /no expressions/);
    });

    it("makes an absolute flake a path: reference (every file of the directory is its source) and keeps references", () => {
        assert.equal(flakeRef("/srv/x/nix"), "path:/srv/x/nix");
        assert.equal(flakeRef("github:o/r?dir=nix"), "github:o/r?dir=nix");
        assert.equal(flakeOutputExpression("/srv/x/nix", "packages.x86_64-linux.pcp-container"), `(builtins.getFlake "path:/srv/x/nix").packages.x86_64-linux.pcp-container`);
    });
});

describe("parseStorePaths", () => {
    it("gives each name its store path", () => {
        const p = `/nix/store/${"a".repeat(32)}-runner`;
        assert.deepEqual(parseStorePaths(JSON.stringify({ "vm-a": p }), ["vm-a"]), { "vm-a": p });
    });

    it("names the expression that gave no store path", () => {
        assert.throws(() => parseStorePaths(JSON.stringify({ "vm-a": 3 }), ["vm-a"]), /no store path for vm-a \(got 3\)/);
        assert.throws(() => parseStorePaths("{}", ["pcp-image"]), /no store path for pcp-image/);
        assert.throws(() => parseStorePaths("not json", ["x"]), /expected a JSON object/);
    });
});

describe("evaluateStorePaths with the real nix", () => {
    /** A flake whose derivation reads a non-.nix file of its own (as nix/ reads container/pmcd.conf). */
    function confFlake(): string {
        const dir = tempDir();
        fs.mkdirSync(path.join(dir, "container"));
        fs.writeFileSync(path.join(dir, "container", "pmcd.conf"), "linux 60 dso linux_init /lib/pmda.so\n");
        fs.writeFileSync(path.join(dir, "README.md"), "not read by any derivation\n");
        fs.writeFileSync(
            path.join(dir, "flake.nix"),
            `{
  outputs = { self }: {
    packages.x86_64-linux.conf = builtins.derivation {
      name = "pe19-conf";
      system = "x86_64-linux";
      builder = "/bin/sh";
      conf = builtins.readFile ./container/pmcd.conf;
      args = [ "-c" "echo \\"$conf\\" > $out" ];
    };
  };
}
`,
        );
        return dir;
    }

    it("follows a non-.nix file the derivation reads, ignores one it does not, and a revert gives the earlier path", async (t) => {
        if (!requireTools(t, ["nix"])) return;
        const flake = confFlake();
        const exprs = { conf: flakeOutputExpression(flake, "packages.x86_64-linux.conf") };
        const first = (await evaluateStorePaths(exprs, flake)).conf!;
        assert.match(first, /^\/nix\/store\/[a-z0-9]{32}-pe19-conf$/);

        const revert = append(path.join(flake, "container", "pmcd.conf"), "# edited\n");
        const edited = (await evaluateStorePaths(exprs, flake)).conf!;
        assert.notEqual(edited, first, "an edit of pmcd.conf is a new store path");
        revert();
        assert.equal((await evaluateStorePaths(exprs, flake)).conf, first, "the revert gives the earlier path back");

        append(path.join(flake, "README.md"), "more words\n");
        fs.writeFileSync(path.join(flake, "notes.txt"), "an untracked file\n");
        assert.equal((await evaluateStorePaths(exprs, flake)).conf, first, "a README edit changes nothing");
    });

    it("gives the path nix build then builds", async (t) => {
        if (!requireTools(t, ["nix", "jq"])) return;
        const flake = confFlake();
        const planned = (await evaluateStorePaths({ conf: flakeOutputExpression(flake, "packages.x86_64-linux.conf") }, flake)).conf;
        const outLink = path.join(tempDir(), "result");
        const out = execFileSync("bash", [path.join(repoRoot, "host", "nix-build.sh"), "build", "--out-link", outLink, "--installable", `path:${flake}#packages.x86_64-linux.conf`], {
            encoding: "utf8",
            env: { ...process.env, NIX_CONFIG: offlineNixConfig },
        });
        assert.equal((JSON.parse(out.trim().split("\n").pop()!) as { storePath: string }).storePath, planned);
    });

    it("follows the files the ci fixture flake's runner reads outside the flake (impure), not its README", async (t) => {
        if (!requireTools(t, ["nix"])) return;
        // The ci flake's layout: nix/constants.json, test/fixtures/{ci-flake,vm}.
        const repo = tempDir();
        for (const entry of ["nix/constants.json", "test/fixtures/ci-flake", "test/fixtures/vm"]) {
            fs.cpSync(path.join(repoRoot, entry), path.join(repo, entry), { recursive: true });
        }
        process.env.PCP_EVAL_REPO = repo;
        try {
            const flake = path.join(repo, "test", "fixtures", "ci-flake");
            const runner = (name: string) =>
                `(builtins.getFlake "path:${flake}").lib.x86_64-linux.mkMicrovmRunner { variant = "base"; name = "${name}"; networking = "user"; }`;
            const exprs = { "vm-a": runner("a"), "vm-b": runner("b") };
            const first = await evaluateStorePaths(exprs, repo);
            assert.deepEqual(Object.keys(first).sort(), ["vm-a", "vm-b"]);
            assert.notEqual(first["vm-a"], first["vm-b"]);

            const revert = append(path.join(repo, "test", "fixtures", "vm", "init.sh"), "# edited\n");
            const edited = await evaluateStorePaths(exprs, repo);
            assert.notEqual(edited["vm-a"], first["vm-a"]);
            assert.notEqual(edited["vm-b"], first["vm-b"]);
            revert();
            assert.deepEqual(await evaluateStorePaths(exprs, repo), first);

            append(path.join(repo, "test", "fixtures", "vm", "README.md"), "more\n");
            fs.writeFileSync(path.join(flake, "README.md"), "the ci flake\n");
            assert.deepEqual(await evaluateStorePaths(exprs, repo), first);
        } finally {
            delete process.env.PCP_EVAL_REPO;
        }
    });

    it("fails naming the expressions and nix's error when the flake does not evaluate", async (t) => {
        if (!requireTools(t, ["nix"])) return;
        const flake = confFlake();
        await assert.rejects(
            evaluateStorePaths({ "pcp-image": flakeOutputExpression(flake, "packages.x86_64-linux.missing") }, flake),
            /evaluating what Nix would build \(pcp-image\) failed .*fix the flake[\s\S]*missing/,
        );
    });
});
