/**
 * index.ts as the engine loads it: config from the stack, preflight, graph,
 * outputs. Run under mocks in preview mode, so host findings are warnings.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import YAML from "yaml";
import { storePathEvaluator } from "../../components/nixEval";
import { fakeStorePaths, recordProgram } from "../helpers/mocks";

const root = path.resolve(__dirname, "../..");
const indexPath = require.resolve("../../index");

function stackConfig(stack: string): Record<string, string> {
    const doc = YAML.parse(fs.readFileSync(path.join(root, `Pulumi.${stack}.yaml`), "utf8")) as { config: Record<string, unknown> };
    return Object.fromEntries(Object.entries(doc.config).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
}

// The dev stack's flake needs nixpkgs, which cannot be evaluated here.
storePathEvaluator.evaluate = fakeStorePaths;

function loadProgram(config: Record<string, string>): Record<string, unknown> {
    pulumi.runtime.setAllConfig({ ...config, "pcp-eval:skipPreflight": "true" });
    delete require.cache[indexPath];
    return require(indexPath) as Record<string, unknown>;
}

describe("index.ts", () => {
    it("exports every output of the dev stack and nothing that is off", async () => {
        const { result, recording } = await recordProgram(() => loadProgram(stackConfig("dev")), { preview: true, stack: "dev" });
        assert.deepEqual(Object.keys(result).sort(), [
            "consolePorts", "grafanaAdminPassword", "grafanaDashboards", "grafanaUrl", "kubernetes", "pmcdEndpoints", "pmproxyUrls", "prometheusUrl", "sshCommands", "stateDir", "summary", "targets",
        ]);
        assert.ok(recording.has("vm-grafana"));
    });

    it("README's outputs table names every output the dev stack exports, and no other", async () => {
        const { result } = await recordProgram(() => loadProgram(stackConfig("dev")), { preview: true, stack: "dev" });
        const readme = fs.readFileSync(path.join(root, "README.md"), "utf8");
        const section = readme.slice(readme.indexOf("## Outputs"), readme.indexOf("\n## ", readme.indexOf("## Outputs") + 1));
        const documented = section
            .split("\n")
            .filter((l) => l.startsWith("| `"))
            .flatMap((l) => [...l.split("|")[1]!.matchAll(/`([A-Za-z]+)`/g)].map((m) => m[1]!));
        assert.deepEqual(documented.sort(), Object.keys(result).sort());
    });

    // Every shape of stack, each backend of host commands: no host resource is left on a Node.js dynamic provider.
    const providerCases: Array<[string, Record<string, string>, string | undefined]> = [
        ["the dev stack", stackConfig("dev"), "dev"],
        ["the ci stack", stackConfig("ci"), "ci"],
        ["the k8s stack (a containerd cluster)", { ...stackConfig("k8s"), "pcp-eval:kubeContext": "pcp-eval-test", "pcp-eval:kubeContainerd": "/run/containerd/containerd.sock" }, "k8s"],
        ["a container alone, host commands dynamic", { "pcp-eval:containerEnabled": "true", "pcp-eval:hostCommands": "dynamic" }, undefined],
        ["the bridge and a TAP VM, host commands dynamic", { "pcp-eval:bridgeEnabled": "true", "pcp-eval:vms": JSON.stringify(["eval:tap"]), "pcp-eval:hostCommands": "dynamic" }, undefined],
    ];
    for (const [what, config, stack] of providerCases) {
        it(`${what}: every host resource is served by pcp-eval's plugin and keeps its dynamic-provider type as an alias`, async () => {
            const { recording } = await recordProgram(() => loadProgram(config), { preview: true, stack });
            const custom = recording.resources.filter((r) => r.custom);
            assert.deepEqual(custom.filter((r) => r.type.includes("pulumi-nodejs") || r.type === "pulumi:providers:pcp-eval").map((r) => r.type), []);
            const host = custom.filter((r) => r.type.startsWith("pcp-eval:index:"));
            assert.ok(host.length > 0, `${what} has host resources`);
            for (const r of host) {
                assert.equal(r.provider, "", `${r.name} uses the engine's default provider of its package (Pulumi.yaml names the plugin's folder)`);
                // A stack made by the dynamic providers keeps its resources (the plugin's diff finds them the same).
                assert.deepEqual(r.aliasTypes, [`pulumi-nodejs:dynamic/pcp-eval:${r.type.split(":")[2]}`], r.name);
            }
        });
    }

    it("a stack with every part off registers nothing", async () => {
        const { recording } = await recordProgram(() => loadProgram({ "pcp-eval:vms": "[]" }), { preview: true });
        assert.deepEqual(recording.resources.map((r) => r.type), []);
    });

    it("a container-only stack exports no VM, Grafana or Kubernetes outputs", async () => {
        const { result } = await recordProgram(() => loadProgram({ "pcp-eval:containerEnabled": "true" }), { preview: true });
        assert.deepEqual(Object.keys(result).sort(), ["pmcdEndpoints", "pmproxyUrls", "stateDir", "summary", "targets"]);
    });

    it("invalid config fails before any resource is registered, with every problem", async () => {
        let error: unknown;
        const { recording } = await recordProgram(() => {
            try {
                return loadProgram({ "pcp-eval:vms": JSON.stringify(["eval", "eval", "grafana:tap"]), "pcp-eval:kubernetesEnabled": "true" });
            } catch (err) {
                error = err;
                return {};
            }
        }, { preview: true });
        assert.ok(error instanceof pulumi.RunError, `expected a RunError, got ${String(error)}`);
        assert.match((error as Error).message, /3 problems; nothing was created/);
        assert.deepEqual(recording.resources, []);
    });
});
