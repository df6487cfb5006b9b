/**
 * Writes the config schema of components/config.ts into Pulumi.yaml (its
 * `config:` block) and into the README's reference table, so the three stay
 * one. `npm run sync:config`; test/unit/schema.test.ts fails when they differ.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import YAML from "yaml";
import { configKeys, projectName } from "../components/config";

const root = path.resolve(__dirname, "..");

export function pulumiYamlConfig(): Record<string, unknown> {
    return Object.fromEntries(
        Object.entries(configKeys).map(([name, key]) => [
            `${projectName}:${name}`,
            key.type === "array"
                ? { type: "array", items: { type: "string" }, default: key.default, description: key.description }
                : { type: key.type, default: key.default, description: key.description },
        ]),
    );
}

export function readmeRows(): string[] {
    return Object.entries(configKeys).map(
        ([name, key]) => `| \`${projectName}:${name}\` | ${key.type} | \`${JSON.stringify(key.default)}\` | ${key.description.replace(/\|/g, "\\|")} |`,
    );
}

function main(): void {
    const projectFile = path.join(root, "Pulumi.yaml");
    const doc = YAML.parseDocument(fs.readFileSync(projectFile, "utf8"));
    doc.set("config", pulumiYamlConfig());
    fs.writeFileSync(projectFile, doc.toString({ lineWidth: 0 }));

    const readmeFile = path.join(root, "README.md");
    const readme = fs.readFileSync(readmeFile, "utf8");
    const start = readme.indexOf("| key | type | default | description |");
    const end = readme.indexOf("<!-- config-reference:end -->");
    if (start < 0 || end < 0) throw new Error("README.md: the config reference table or its end marker is missing");
    const table = ["| key | type | default | description |", "|---|---|---|---|", ...readmeRows(), ""].join("\n");
    fs.writeFileSync(readmeFile, readme.slice(0, start) + table + readme.slice(end));
    console.log(`sync-config-schema: ${Object.keys(configKeys).length} keys written to Pulumi.yaml and README.md`);
}

if (require.main === module) main();
