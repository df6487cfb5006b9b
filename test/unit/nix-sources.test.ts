/**
 * nix/ cannot be evaluated here (no nixpkgs), so every nixpkgs / microvm.nix
 * option, pkgs attribute and lib function it uses is confirmed by reading the
 * defining source, and listed in nix/SOURCES.md. This test reads nix/**\/*.nix
 * as text, extracts what they use, and fails naming every use SOURCES.md does
 * not list: a later edit cannot add an unconfirmed option silently.
 *
 * Extraction is textual and deliberately simple:
 * - option paths: dotted paths whose root is a NixOS option root (services,
 *   systemd, networking, ...), not preceded by another attribute (so
 *   `constants.network.x` is not one) unless by `config.`/`options.`, and the
 *   `key = ...` lines inside attrsets opened under such a path
 *   (`services.openssh = {` ... `settings = {` ... `PermitRootLogin = ...`);
 *   the user-chosen name under attrsOf options (systemd.services.<name>, ...)
 *   becomes `<name>`;
 * - pkgs attributes: `pkgs.x` (two segments for package sets such as
 *   dockerTools) and the names inside `with pkgs; [ ... ]`;
 * - lib functions: `lib.x` (two segments under lib.types, lib.trivial, ...).
 * A use is listed when the first cell of a SOURCES.md table row names it, a
 * parent of it ending in `.*` (a freeform set such as serviceConfig), or one
 * of its children (a nested attrset definition like `services.openssh = {`).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";

const repoRoot = path.resolve(__dirname, "..", "..");
const nixDir = path.join(repoRoot, "nix");
const sourcesMd = path.join(nixDir, "SOURCES.md");

const optionRoots = [
    "services",
    "systemd",
    "networking",
    "users",
    "boot",
    "environment",
    "system",
    "microvm",
    "virtualisation",
    "nixpkgs",
    "security",
    "programs",
    "hardware",
    "assertions",
    "warnings",
    "disabledModules",
];

/** Options of attrsOf type whose next segment is a name the user picks. */
const namedSets = ["systemd.services", "systemd.network.networks", "users.users", "users.groups", "microvm.interfaces"];

/** pkgs attributes that are sets: the next segment is the thing used (pkgs.dockerTools.buildLayeredImage). */
const pkgsSets = ["dockerTools", "testers", "stdenv", "python3", "llvmPackages", "unixtools"];

/** lib namespaces whose next segment is the thing used (lib.types.str). */
const libNamespaces = ["types", "trivial", "licenses", "platforms", "strings", "lists", "attrsets"];

export function nixFiles(dir: string): string[] {
    const out: string[] = [];
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, entry.name);
        if (entry.isDirectory()) out.push(...nixFiles(p));
        else if (entry.name.endsWith(".nix")) out.push(p);
    }
    return out.sort();
}

/** The text with Nix `#` comments removed (a `#` after whitespace or at line start). */
export function stripComments(text: string): string {
    return text
        .split("\n")
        .map((line) => line.replace(/(^|\s)#.*$/, "$1"))
        .join("\n");
}

/** `"10-uplink"` -> `10-uplink`; names in quotes are plain segments. */
function segments(dotted: string): string[] {
    return dotted.split(".").map((s) => s.replace(/^"|"$/g, ""));
}

export function normaliseOption(dotted: string): string {
    const segs = segments(dotted);
    for (const set of namedSets) {
        const n = set.split(".").length;
        if (segs.length > n && segs.slice(0, n).join(".") === set) segs[n] = "<name>";
    }
    return segs.join(".");
}

const seg = String.raw`(?:[A-Za-z_][A-Za-z0-9_'-]*|"[^"$]*")`;

export function optionPaths(text: string): string[] {
    const out = new Set<string>();
    const re = new RegExp(String.raw`(^|[^A-Za-z0-9_'.-]|\bconfig\.|\boptions\.)((?:${optionRoots.join("|")})(?:\.${seg})*)`, "g");
    for (const line of stripComments(text).split("\n")) {
        for (const m of line.matchAll(re)) {
            const dotted = m[2];
            // A bare root word (e.g. `system` as a function argument) is no option path,
            // except for the top-level options that are single words.
            if (!dotted.includes(".") && !["assertions", "warnings", "disabledModules"].includes(dotted)) continue;
            // File and project names in strings ("microvm.nix's module") are no option paths.
            if (/\.nix$|'/.test(dotted)) continue;
            // `options ? microvm` and `inherit (config.boot)` style uses are caught too;
            // an attribute *inside* our own record (e.g. `pcp.environment`) is not, by the lookbehind.
            out.add(normaliseOption(dotted));
        }
    }
    for (const nested of nestedOptionPaths(text)) out.add(nested);
    return [...out].sort();
}

const rootRe = new RegExp(String.raw`^(?:${optionRoots.join("|")})(?:\.|$)`);

/**
 * Options set inside a nested attrset (`services.openssh = {` ... `settings = {` ...
 * `PasswordAuthentication = x;`): a scope is opened by a line ending in
 * `key = {` (or `key = lib.mkIf c {`), and is an option scope when its key is an
 * option path or its parent is an option scope. Every `key =` line in an option
 * scope is a use. Other braces (lists of records, `${...}`, let-blocks) open scopes
 * that are not option scopes, so what is inside them is not checked.
 */
export function nestedOptionPaths(text: string): string[] {
    const out = new Set<string>();
    const stack: (string | null)[] = [];
    const opener = new RegExp(String.raw`^\s*(${seg}(?:\.${seg})*)\s*=\s*(?:lib\.mk(?:If|Merge|Default|Force)\b[^{]*)?\{$`);
    const assignment = new RegExp(String.raw`^\s*(${seg}(?:\.${seg})*)\s*=`);
    for (const line of stripComments(text).split("\n")) {
        const trimmed = line.trimEnd();
        const scope = stack.length > 0 ? stack[stack.length - 1] : null;
        const assigned = assignment.exec(trimmed);
        if (assigned && scope !== null) out.add(normaliseOption(`${scope}.${assigned[1]}`));
        const open = opener.exec(trimmed);
        for (let i = 0; i < trimmed.length; i++) {
            if (trimmed[i] === "}") stack.pop();
            else if (trimmed[i] === "{") {
                let value: string | null = null;
                if (open && i === trimmed.length - 1) {
                    const key = open[1];
                    if (scope !== null) value = `${scope}.${key}`;
                    else if (rootRe.test(key)) value = key;
                }
                stack.push(value);
            }
        }
    }
    return [...out].sort();
}

export function pkgsAttributes(text: string): string[] {
    const out = new Set<string>();
    const body = stripComments(text);
    for (const m of body.matchAll(/(?<![A-Za-z0-9_.])pkgs\.([A-Za-z_][A-Za-z0-9_-]*)(?:\.([A-Za-z_][A-Za-z0-9_-]*))?/g)) {
        const [, first, second] = m;
        out.add(pkgsSets.includes(first) && second ? `pkgs.${first}.${second}` : `pkgs.${first}`);
    }
    for (const m of body.matchAll(/with pkgs;\s*\[([^\]]*)\]/g)) {
        for (const name of m[1].split(/\s+/)) {
            // `cfg.package` in the same list is a local value, not a pkgs attribute.
            const dotted = /^([A-Za-z_][A-Za-z0-9_-]*)\.[A-Za-z_][A-Za-z0-9_-]*$/.exec(name);
            if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(name) || (dotted && pkgsSets.includes(dotted[1]))) out.add(`pkgs.${name}`);
        }
    }
    return [...out].sort();
}

export function libFunctions(text: string): string[] {
    const out = new Set<string>();
    for (const m of stripComments(text).matchAll(/(?<![A-Za-z0-9_.])lib\.([A-Za-z_][A-Za-z0-9_']*)(?:\.([A-Za-z_][A-Za-z0-9_']*))?(?:\.([A-Za-z_][A-Za-z0-9_']*))?/g)) {
        const [, first, second, third] = m;
        if (first === "types" && second === "ints" && third) out.add(`lib.types.ints.${third}`);
        else if (libNamespaces.includes(first) && second) out.add(`lib.${first}.${second}`);
        else out.add(`lib.${first}`);
    }
    return [...out].sort();
}

/** The first cell's code spans of every table row in SOURCES.md. */
export function listedInSources(markdown: string): Set<string> {
    const out = new Set<string>();
    for (const line of markdown.split("\n")) {
        const m = /^\|([^|]*)\|/.exec(line);
        if (!m) continue;
        for (const code of m[1].matchAll(/`([^`]+)`/g)) out.add(code[1].trim());
    }
    return out;
}

export function isListed(use: string, listed: Set<string>): boolean {
    if (listed.has(use)) return true;
    for (const entry of listed) {
        if (entry.endsWith(".*") && (use + ".").startsWith(entry.slice(0, -1))) return true;
        if (entry.startsWith(use + ".")) return true;
    }
    return false;
}

/** Every use in nix/, as "what (file, file...)". */
function uses(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const file of nixFiles(nixDir)) {
        const text = fs.readFileSync(file, "utf8");
        const rel = path.relative(repoRoot, file);
        for (const use of [...optionPaths(text), ...pkgsAttributes(text), ...libFunctions(text)]) {
            out.set(use, [...(out.get(use) ?? []), rel]);
        }
    }
    return out;
}

describe("nix/SOURCES.md: every nixpkgs/microvm.nix option, pkgs attribute and lib function nix/ uses is confirmed", () => {
    test("the extraction finds the uses it is meant to find (and skips what only looks like one)", () => {
        const sample = [
            "{ config, lib, pkgs, ... }:",
            "let cfg = config.services.pcp; t = constants.network.subnet; e = pcp.environment.PCP_DIR; in {",
            "  # services.commented.out = true;",
            '  systemd.network.networks."10-uplink".matchConfig.MACAddress = x;',
            "  systemd.services.pmcd.serviceConfig.TimeoutStartSec = lib.mkDefault 300;",
            "  users.users.root.openssh.authorizedKeys.keys = [ ];",
            "  x = lib.types.ints.between 1 2; y = lib.types.str; z = pkgs.dockerTools.buildLayeredImage { };",
            "  packages = with pkgs; [ jq curl unixtools.hostname ];",
            "}",
        ].join("\n");
        assert.deepEqual(optionPaths(sample), [
            "services.pcp",
            "systemd.network.networks.<name>.matchConfig.MACAddress",
            "systemd.services.<name>.serviceConfig.TimeoutStartSec",
            "users.users.<name>.openssh.authorizedKeys.keys",
        ]);
        const nested = [
            "{",
            "  config = lib.mkIf cfg.enable {",
            "    services.openssh = {",
            "      enable = true;",
            "      settings = {",
            "        PermitRootLogin = \"no\";",
            "      };",
            "    };",
            "    systemd.services.pmcd = {",
            "      serviceConfig = {",
            "        Type = \"forking\";",
            "      } // hardening;",
            "    };",
            "    notAnOption = { x = 1; };",
            "    microvm.forwardPorts = map (fw: {",
            "      from = \"host\";",
            "    }) fws;",
            "  };",
            "}",
        ].join("\n");
        assert.deepEqual(nestedOptionPaths(nested), [
            "services.openssh.enable",
            "services.openssh.settings",
            "services.openssh.settings.PermitRootLogin",
            "systemd.services.<name>.serviceConfig",
            "systemd.services.<name>.serviceConfig.Type",
        ]);
        assert.deepEqual(pkgsAttributes(sample), ["pkgs.curl", "pkgs.dockerTools.buildLayeredImage", "pkgs.jq", "pkgs.unixtools.hostname"]);
        assert.deepEqual(libFunctions(sample), ["lib.mkDefault", "lib.types.ints.between", "lib.types.str"]);
        const listed = listedInSources("| `systemd.services.<name>.serviceConfig.*` | x |\n| `services.pcp.enable` | y |\nnot a row `users.users`");
        assert.ok(isListed("systemd.services.<name>.serviceConfig.TimeoutStartSec", listed));
        assert.ok(isListed("services.pcp", listed), "a parent of a listed option (nested definition)");
        assert.ok(!isListed("users.users.<name>.openssh.authorizedKeys.keys", listed), "code outside a table row does not count");
    });

    test("every use in nix/**/*.nix is listed in nix/SOURCES.md", () => {
        const listed = listedInSources(fs.readFileSync(sourcesMd, "utf8"));
        const all = uses();
        assert.ok(all.size > 50, `expected many uses, found ${all.size}`);
        const missing = [...all].filter(([use]) => !isListed(use, listed)).map(([use, files]) => `${use} (${[...new Set(files)].join(", ")})`);
        assert.deepEqual(
            missing,
            [],
            `nix/ uses options/attributes nix/SOURCES.md does not list; confirm each in the source of the pinned nixpkgs/microvm.nix and add a row:\n  ${missing.join("\n  ")}`,
        );
    });
});
