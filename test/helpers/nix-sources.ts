/**
 * Textual extraction of the nixpkgs/microvm.nix names nix/**\/*.nix uses, and
 * of the names nix/SOURCES.md lists, for test/unit/nix-sources.test.ts (which
 * says why and how).
 */
import * as fs from "node:fs";
import * as path from "node:path";

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
const namedSets = ["systemd.services", "systemd.network.networks", "users.users", "users.groups", "microvm.interfaces", "services.redis.servers"];

/** pkgs attributes that are sets: the next segment is the thing used (pkgs.dockerTools.buildLayeredImage). */
const pkgsSets = ["dockerTools", "testers", "stdenv", "python3", "llvmPackages", "unixtools"];

/** lib namespaces whose next segment is the thing used (lib.types.str). */
const libNamespaces = ["types", "trivial", "licenses", "platforms", "strings", "lists", "attrsets", "generators"];

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

/**
 * The text with the bodies of Nix indented strings (`'' ... ''`) blanked, newlines kept:
 * a shell script's `base=...` or `{` is neither an option nor a scope.
 */
export function blankIndentedStrings(text: string): string {
    return text.replace(/''((?:[^']|'(?!')|''['$\\])*)''/g, (_m, body: string) => `''${body.replace(/[^\n]/g, "")}''`);
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
    for (const line of blankIndentedStrings(stripComments(text)).split("\n")) {
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
