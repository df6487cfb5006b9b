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
import { isListed, libFunctions, listedInSources, nestedOptionPaths, nixFiles, optionPaths, pkgsAttributes } from "../helpers/nix-sources";

const repoRoot = path.resolve(__dirname, "..", "..");
const nixDir = path.join(repoRoot, "nix");
const sourcesMd = path.join(nixDir, "SOURCES.md");

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
