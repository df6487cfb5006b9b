/**
 * Builds the command lines the components hand to local.Command. Host work
 * lives in host/ so it can be tested without Pulumi; these helpers only
 * quote arguments so that no config value can change a command's meaning.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";

export function shellQuote(value: string): string {
    if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(value)) return value;
    return `'${value.replace(/'/g, `'\\''`)}'`;
}

export type FlagValue = string | number | boolean | undefined | readonly string[];

/** `bash host/<script> <verb> --flag value ...`; false/undefined flags are left out, arrays repeat the flag. */
export function scriptCommand(script: string, verb: string, flags: Record<string, FlagValue> = {}): string {
    const parts = ["bash", `host/${script}`, verb];
    for (const [name, value] of Object.entries(flags)) {
        if (value === undefined || value === false) continue;
        if (value === true) {
            parts.push(`--${name}`);
        } else if (Array.isArray(value)) {
            for (const item of value as readonly string[]) parts.push(`--${name}`, shellQuote(item));
        } else {
            parts.push(`--${name}`, shellQuote(String(value)));
        }
    }
    return parts.join(" ");
}

/** Like scriptCommand, for flags that are still Outputs. */
export function scriptCommandOutput(script: string, verb: string, flags: Record<string, pulumi.Input<FlagValue>>): pulumi.Output<string> {
    return pulumi.all(flags as Record<string, pulumi.Input<FlagValue>>).apply((resolved) => scriptCommand(script, verb, resolved as Record<string, FlagValue>));
}

/** Parses the one JSON line a script prints on stdout (the one parser, components/run.ts). */
export { parseLastJsonLine as parseScriptJson } from "./run";

/**
 * A content hash of a local flake's sources (the .nix files, flake.lock and
 * constants.json), so builds rerun when and only when the flake changes.
 */
export function flakeFingerprint(flakeDir: string): string {
    const hash = crypto.createHash("sha256");
    const walk = (dir: string): string[] =>
        fs
            .readdirSync(dir, { withFileTypes: true })
            .filter((e) => !e.name.startsWith(".") && e.name !== "result")
            .flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]))
            .filter((f) => /\.(nix|json|lock)$/.test(f) || path.basename(f) === "flake.lock");
    let files: string[] = [];
    try {
        files = walk(flakeDir).sort();
    } catch {
        return "unreadable";
    }
    for (const file of files) {
        hash.update(path.relative(flakeDir, file));
        hash.update("\0");
        hash.update(fs.readFileSync(file));
        hash.update("\0");
    }
    return hash.digest("hex").slice(0, 32);
}
