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

    // Named "default", the provider would meet the engine's own default one (a duplicate URN) if any dynamic
    // resource fell back to it: every shape of stack is checked, each backend of host commands.
    const providerCases: Array<[string, Record<string, string>, string | undefined]> = [
        ["the dev stack", stackConfig("dev"), "dev"],
        ["the ci stack", stackConfig("ci"), "ci"],
        ["the k8s stack (a containerd cluster)", { ...stackConfig("k8s"), "pcp-eval:kubeContext": "pcp-eval-test", "pcp-eval:kubeContainerd": "/run/containerd/containerd.sock" }, "k8s"],
        ["a container alone, host commands dynamic", { "pcp-eval:containerEnabled": "true", "pcp-eval:hostCommands": "dynamic" }, undefined],
        ["the bridge and a TAP VM, host commands dynamic", { "pcp-eval:bridgeEnabled": "true", "pcp-eval:vms": JSON.stringify(["eval:tap"]), "pcp-eval:hostCommands": "dynamic" }, undefined],
    ];
    for (const [what, config, stack] of providerCases) {
        it(`${what}: the dynamic resources' provider is registered before the rest of the program, and every dynamic resource uses it`, async () => {
            const { recording } = await recordProgram(() => loadProgram(config), { preview: true, stack });
            const custom = recording.resources.filter((r) => r.custom);
            assert.equal(custom[0]?.type, "pulumi:providers:pulumi-nodejs", "the first custom resource registered");
            assert.equal(custom[0]?.name, "default", "named as the engine names its own, so earlier stacks see no change");
            const dynamic = custom.filter((r) => r.type.startsWith("pulumi-nodejs:dynamic"));
            assert.ok(dynamic.length > 0, `${what} has dynamic resources`);
            for (const r of dynamic) assert.ok(r.provider.startsWith(`${custom[0]!.urn}::`), `${r.name} uses ${r.provider || "the default provider"}`);
        });
    }

    it("a stack with every part off registers nothing, not even the dynamic resources' provider", async () => {
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
