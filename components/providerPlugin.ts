/**
 * pcp-eval's own provider plugin, pulumi-resource-pcp-eval (provider/), which
 * serves the host resources: HostCommand, HostState, MicroVmProcess,
 * NetBridge, NetTap and DaemonSetEndpoints. It replaced Node.js dynamic
 * providers, whose plugin took a second or more to start on every engine
 * pass and whose closures the program serialized on every run (issue 17,
 * bench/README.md); a Go plugin starts in milliseconds.
 *
 * Pulumi.yaml's `plugins.providers` points the engine at provider/bin. The
 * program builds the plugin there before it declares a host resource when
 * the build is missing or older than the sources (provider/build.sh, keyed by
 * a digest of the sources that this file computes the same way without Go),
 * so a plain `pulumi up` on a fresh checkout or after a pull just works.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type * as pulumi from "@pulumi/pulumi";

/** The package of the host resources' type tokens and the plugin's name. */
export const hostResourcePackage = "pcp-eval";

export type HostResourceKind = "HostCommand" | "HostState" | "MicroVmProcess" | "NetBridge" | "NetTap" | "DaemonSetEndpoints";

export function hostResourceType(kind: HostResourceKind): string {
    return `${hostResourcePackage}:index:${kind}`;
}

/**
 * A host resource's options: an alias to the type its dynamic provider gave
 * it, so a stack made before the plugin keeps its resources. The engine asks
 * the plugin's diff about the recorded state (the provider changed, but its
 * configuration did not), and as the properties are the same nothing is
 * replaced: the running VMs, bridge and TAPs stay.
 */
export function hostResourceOptions<T extends pulumi.CustomResourceOptions>(kind: HostResourceKind, opts: T | undefined): T {
    return { ...(opts ?? ({} as T)), aliases: [...(opts?.aliases ?? []), { type: `pulumi-nodejs:dynamic/pcp-eval:${kind}` }] };
}

/** The files provider/build.sh digests, in its order (names sorted in the C locale). */
export function providerSourceFiles(providerDir: string): string[] {
    const names = fs.readdirSync(providerDir).filter((n) => n === "build.sh" || n === "go.mod" || n === "go.sum" || (n.endsWith(".go") && !n.endsWith("_test.go")));
    return names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The key provider/build.sh computes: sha256 of `sha256sum FILES`' listing, its first 16 hex digits. */
export function providerSourceKey(providerDir: string): string {
    const listing = providerSourceFiles(providerDir)
        .map((name) => `${crypto.createHash("sha256").update(fs.readFileSync(path.join(providerDir, name))).digest("hex")}  ${name}\n`)
        .join("");
    return crypto.createHash("sha256").update(listing).digest("hex").slice(0, 16);
}

export interface ProviderPluginBuild {
    binDir: string;
    key: string;
    built: boolean;
    seconds: number;
}

/**
 * Makes sure provider/bin holds the plugin built from the sources as they
 * are: a digest of a few files when it does (a millisecond or two), else
 * provider/build.sh (Go's build cache keeps a rebuild to seconds; the first
 * build on a machine compiles the SDK's gRPC code). The build's progress goes
 * to stderr, which Pulumi shows; a failure names what to do.
 */
export function ensureProviderPlugin(projectDir: string, run: (script: string) => string = runBuild): ProviderPluginBuild {
    const providerDir = path.join(projectDir, "provider");
    const binDir = path.join(providerDir, "bin");
    const key = providerSourceKey(providerDir);
    const stamp = path.join(binDir, "source.sha256");
    const plugin = path.join(binDir, "pulumi-resource-pcp-eval");
    const current = fs.existsSync(plugin) && fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8").trim() === key;
    if (current) return { binDir, key, built: false, seconds: 0 };
    const out = run(path.join(providerDir, "build.sh"));
    const build = JSON.parse(out.trim().split("\n").pop() ?? "") as ProviderPluginBuild;
    if (build.key !== key) throw new Error(`provider/build.sh built ${build.key}, but the sources are ${key} now: were they edited during the build? Run again.`);
    return build;
}

function runBuild(script: string): string {
    const childProcess: typeof import("node:child_process") = require("node:child_process");
    try {
        return childProcess.execFileSync("bash", [script], { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8" });
    } catch (err) {
        throw new Error(`building pcp-eval's provider plugin failed (bash ${script}; it needs Go >= 1.26, which \`nix develop ./nix\` provides): ${(err as Error).message}`);
    }
}
