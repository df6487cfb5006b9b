/**
 * One schema, three places: components/config.ts (what the program reads),
 * Pulumi.yaml (what `pulumi config` validates) and the README's reference.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import YAML from "yaml";
import { configKeys, parseConfig } from "../../components/config";

const root = path.resolve(__dirname, "../..");
const project = YAML.parse(fs.readFileSync(path.join(root, "Pulumi.yaml"), "utf8")) as {
    name: string;
    runtime: { name: string; options: { typescript: boolean } };
    backend: { url: string };
    config: Record<string, { type: string; default: unknown; description: string; items?: { type: string } }>;
};

describe("Pulumi.yaml", () => {
    it("is the pcp-eval project on the nodejs runtime with TypeScript and a local file backend", () => {
        assert.equal(project.name, "pcp-eval");
        assert.equal(project.runtime.name, "nodejs");
        assert.equal(project.runtime.options.typescript, true);
        assert.match(project.backend.url, /^file:\/\//);
    });

    it("declares exactly the keys the program reads, each with type, default and description", () => {
        const declared = Object.keys(project.config).sort();
        assert.deepEqual(declared, Object.keys(configKeys).map((k) => `pcp-eval:${k}`).sort());
        for (const [name, key] of Object.entries(configKeys)) {
            const entry = project.config[`pcp-eval:${name}`]!;
            assert.equal(entry.type, key.type, `${name}: type`);
            assert.deepEqual(entry.default, key.default, `${name}: default`);
            assert.equal(entry.description, key.description, `${name}: description`);
            if (key.type === "array") assert.deepEqual(entry.items, { type: "string" }, `${name}: items`);
        }
    });
});

describe("README configuration reference", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8");
    const section = /<!-- config-reference:start[^>]*-->([\s\S]*?)<!-- config-reference:end -->/.exec(readme)?.[1] ?? "";
    const rows = section
        .split("\n")
        .filter((l) => l.startsWith("| `pcp-eval:"))
        .map((l) => l.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim()));

    it("has one row per key, in the schema's order, with its type, default and description", () => {
        assert.deepEqual(rows.map((r) => r[0]), Object.keys(configKeys).map((k) => `\`pcp-eval:${k}\``));
        for (const [name, key] of Object.entries(configKeys)) {
            const row = rows.find((r) => r[0] === `\`pcp-eval:${name}\``)!;
            assert.equal(row[1], key.type, `${name}: type`);
            assert.equal(row[2], `\`${JSON.stringify(key.default)}\``, `${name}: default`);
            assert.equal(row[3]!.replace(/\\\|/g, "|"), key.description, `${name}: description`);
        }
    });

    it("gives exactly two fresh-machine commands: bring up dev, and run every test", () => {
        const blocks = [...readme.matchAll(/## Two commands[\s\S]*?(?=\n## )/g)][0]?.[0] ?? "";
        const commands = [...blocks.matchAll(/```\n([^`]+?)\n```/g)].map((m) => m[1]!.trim());
        assert.equal(commands.length, 2);
        assert.match(commands[0]!, /scripts\/up\.sh dev/);
        assert.equal(commands[1], "bash scripts/test-fresh-host.sh");
        assert.match(fs.readFileSync(path.join(root, ".ci/run"), "utf8"), /scripts\/test-fresh-host\.sh/);
    });
});

describe("Pulumi.dev.yaml", () => {
    const dev = YAML.parse(fs.readFileSync(path.join(root, "Pulumi.dev.yaml"), "utf8")) as { config: Record<string, unknown> };
    const raw = Object.fromEntries(Object.entries(dev.config).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));

    it("is the full environment and valid", () => {
        const cfg = parseConfig(raw, "dev", root);
        assert.ok(cfg.container, "container on");
        assert.ok(cfg.bridge, "bridge on");
        assert.deepEqual(cfg.vms.map((v) => `${v.variant}:${v.networking}`), ["eval:user", "grafana:tap", "bpf:user"]);
        assert.deepEqual(cfg.kubernetes && { context: cfg.kubernetes.context, namespace: cfg.kubernetes.namespace }, { context: "minikube", namespace: "pcp" });
    });
});
