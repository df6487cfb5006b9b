/**
 * components/providerPlugin.ts: the digest it computes is provider/build.sh's
 * (the program decides from it whether to build), and ensureProviderPlugin
 * builds only when provider/bin is missing or stale.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { requireTools } from "../test/helpers/tools";
import { ensureProviderPlugin, hostResourceOptions, hostResourceType, providerSourceFiles, providerSourceKey } from "./providerPlugin";

const repoRoot = path.resolve(__dirname, "..");

/** A project whose provider/ holds copies of the real sources (no build output). */
function projectCopy(): string {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "pe-providerplugin-"));
    fs.mkdirSync(path.join(root, "provider", "bin"), { recursive: true });
    for (const name of providerSourceFiles(path.join(repoRoot, "provider"))) {
        fs.copyFileSync(path.join(repoRoot, "provider", name), path.join(root, "provider", name));
    }
    return root;
}

describe("providerPlugin", () => {
    it("reads what provider/build.sh reads: build.sh, go.mod, go.sum and the Go sources, no tests, in C-locale order", () => {
        const files = providerSourceFiles(path.join(repoRoot, "provider"));
        assert.ok(files.includes("build.sh") && files.includes("go.mod") && files.includes("go.sum") && files.includes("main.go"));
        assert.deepEqual(files.filter((f) => f.endsWith("_test.go") || f === "bin"), []);
        assert.deepEqual(files, [...files].sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : 1)));
    });

    it("computes the key provider/build.sh computes, and a changed source changes it", (t) => {
        if (!requireTools(t, ["go", "bash", "sha256sum"])) return;
        const root = projectCopy();
        try {
            const provider = path.join(root, "provider");
            const fromScript = execFileSync("bash", [path.join(provider, "build.sh"), "--key"], { encoding: "utf8" }).trim();
            assert.match(fromScript, /^[0-9a-f]{16}$/);
            assert.equal(providerSourceKey(provider), fromScript);
            fs.appendFileSync(path.join(provider, "props.go"), "\n// an edit\n");
            const edited = execFileSync("bash", [path.join(provider, "build.sh"), "--key"], { encoding: "utf8" }).trim();
            assert.notEqual(edited, fromScript);
            assert.equal(providerSourceKey(provider), edited);
            // A test file is no part of the plugin: adding one changes nothing.
            fs.writeFileSync(path.join(provider, "extra_test.go"), "package main\n");
            assert.equal(providerSourceKey(provider), edited);
        } finally {
            fs.rmSync(root, { recursive: true, force: true });
        }
    });

    it("builds when the plugin is missing or older than its sources, and not when it is current", () => {
        const root = projectCopy();
        try {
            const bin = path.join(root, "provider", "bin");
            const key = providerSourceKey(path.join(root, "provider"));
            const builds: string[] = [];
            const fakeBuild = (script: string): string => {
                builds.push(script);
                fs.writeFileSync(path.join(bin, "pulumi-resource-pcp-eval"), "#!/bin/sh\n", { mode: 0o755 });
                fs.writeFileSync(path.join(bin, "source.sha256"), `${key}\n`);
                return `progress\n{"binDir":"${bin}","key":"${key}","built":true,"seconds":3}\n`;
            };
            assert.deepEqual(ensureProviderPlugin(root, fakeBuild), { binDir: bin, key, built: true, seconds: 3 });
            assert.deepEqual(builds, [path.join(root, "provider", "build.sh")]);
            assert.deepEqual(ensureProviderPlugin(root, fakeBuild), { binDir: bin, key, built: false, seconds: 0 });
            assert.equal(builds.length, 1, "a current build is not built again");

            fs.writeFileSync(path.join(bin, "source.sha256"), "0000000000000000\n");
            ensureProviderPlugin(root, fakeBuild);
            assert.equal(builds.length, 2, "a stale stamp builds again");

            // A build that reports another key (the sources changed while it ran) is an error that says so.
            fs.writeFileSync(path.join(bin, "source.sha256"), "0000000000000000\n");
            assert.throws(
                () => ensureProviderPlugin(root, () => `{"binDir":"${bin}","key":"ffffffffffffffff","built":true,"seconds":1}`),
                /built ffffffffffffffff, but the sources are [0-9a-f]{16} now: were they edited during the build/,
            );
        } finally {
            fs.rmSync(root, { recursive: true, force: true });
        }
    });

    it("types a host resource in package pcp-eval and aliases it to its dynamic-provider type, keeping the caller's aliases", () => {
        assert.equal(hostResourceType("MicroVmProcess"), "pcp-eval:index:MicroVmProcess");
        const opts = hostResourceOptions("NetTap", { aliases: [{ name: "old-name" }], deleteBeforeReplace: true });
        assert.deepEqual(opts.aliases, [{ name: "old-name" }, { type: "pulumi-nodejs:dynamic/pcp-eval:NetTap" }]);
        assert.equal(opts.deleteBeforeReplace, true);
        assert.deepEqual(hostResourceOptions("HostState", undefined).aliases, [{ type: "pulumi-nodejs:dynamic/pcp-eval:HostState" }]);
    });
});
