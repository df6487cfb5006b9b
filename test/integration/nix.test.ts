/**
 * The parts of nix/ that Debian's nix 2.8 can check without nixpkgs or the
 * network: every .nix file parses; the variant table and port arithmetic
 * (nix/lib/ports.nix) equal what components/constants.ts computes; the
 * MicroVM argument validation (nix/lib/vm-params.nix) resolves defaults and
 * rejects bad input with clear messages; the flake's inputs are pinned and its
 * outputs have the attributes the program builds. Plus the repository-wide
 * rule that constants.json's numbers and addresses are not restated elsewhere.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import type { VmSpec } from "../../components/config";
import { consolePorts, constants, forwardedPorts, variants, type Variant } from "../../components/constants";
import { runnerExpression } from "../../components/microVm";
import { nixEvalError, nixEvalJson, nixTools, repoRoot, run } from "../helpers/nix";
import { requireTools } from "../helpers/tools";

const nixDir = path.join(repoRoot, "nix");
const portsNix = path.join(nixDir, "lib", "ports.nix");
const vmParamsNix = path.join(nixDir, "lib", "vm-params.nix");
const flakeNix = path.join(nixDir, "flake.nix");

const skipDirs = new Set(["node_modules", ".git", "bin", ".pcp-eval-state", ".pulumi-state", ".cache", "test-results"]);

function walk(dir: string, keep: (file: string) => boolean, out: string[] = []): string[] {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        if (entry.isDirectory()) {
            if (!skipDirs.has(entry.name)) walk(path.join(dir, entry.name), keep, out);
        } else if (entry.isFile() && keep(entry.name)) {
            out.push(path.join(dir, entry.name));
        }
    }
    return out;
}

interface NixTap {
    index: number;
    id: string;
    address: string;
    mac: string;
    prefixLength: number;
    gateway: string;
}
interface NixVariant {
    name: string;
    hostname: string;
    portOffset: number;
    features: Record<string, boolean>;
    forwards: Array<{ name: string; host: number; guest: number }>;
    forwardedPorts: Record<string, number>;
    consolePorts: { serial: number; virtio: number };
    tap: NixTap;
}
interface NixTable {
    variants: Record<string, NixVariant>;
    network: { bridge: string; subnet: string; gateway: string; prefixLength: number; nftTable: string };
    guestPorts: Record<string, number>;
}
interface ResolvedParams {
    variant: string;
    name: string;
    hostname: string;
    networking: "user" | "tap";
    tap: NixTap | null;
    forwards: Array<{ name: string; host: number; guest: number }>;
    consolePorts: { serial: number; virtio: number };
    features: Record<string, boolean>;
    memoryMiB: number;
    vcpus: number;
    debugMode: boolean;
    pcpSource: string;
    accel: string;
    warnings: string[];
}

const vmParams = (args: string) => `import ${vmParamsNix} ${args}`;

describe("nix/: offline checks", () => {
    test("every .nix file parses (nix-instantiate --parse)", async (t) => {
        if (!requireTools(t, nixTools)) return;
        const files = [
            ...walk(nixDir, (f) => f.endsWith(".nix")),
            ...walk(path.join(repoRoot, "test", "fixtures"), (f) => f.endsWith(".nix")),
        ];
        assert.ok(files.includes(flakeNix), "nix/flake.nix exists");
        assert.ok(files.length >= 10, `expected the flake's files, found ${files.length}`);
        for (const file of files) {
            const r = await run("nix-instantiate", ["--parse", file]);
            assert.equal(r.code, 0, `${path.relative(repoRoot, file)} does not parse:\n${r.stderr}`);
        }
    });

    test("variant table and port arithmetic equal components/constants.ts for every variant", async (t) => {
        if (!requireTools(t, nixTools)) return;
        const table = await nixEvalJson<NixTable>({ file: portsNix });
        assert.deepEqual(Object.keys(table.variants).sort(), [...variants].sort());
        for (const v of variants) {
            const n = table.variants[v];
            const c = constants.variants[v];
            assert.deepEqual(n.forwardedPorts, { ...forwardedPorts(v) }, `${v}: forwarded ports`);
            assert.deepEqual(n.consolePorts, consolePorts(v), `${v}: console ports`);
            assert.equal(n.hostname, c.hostname, `${v}: hostname`);
            assert.deepEqual(n.features, c.features, `${v}: features`);
            assert.equal(n.portOffset, c.portOffset, `${v}: port offset`);
            for (const fw of n.forwards) {
                const key = fw.name as keyof typeof constants.ports;
                assert.equal(fw.guest, constants.ports[key], `${v}: ${fw.name} guest port`);
            }
        }
        assert.equal(table.network.subnet, constants.network.subnet);
        assert.equal(table.network.gateway, constants.network.gateway);
        assert.equal(table.network.prefixLength, Number(constants.network.subnet.split("/")[1]));
        assert.deepEqual(table.guestPorts, constants.ports);
    });

    test("each variant has its own TAP device, address and MAC, derived from the constants", async (t) => {
        if (!requireTools(t, nixTools)) return;
        const table = await nixEvalJson<NixTable>({ file: portsNix });
        const first = constants.network.firstVmAddress.split(".").map(Number);
        const seen = { id: new Set<string>(), address: new Set<string>(), mac: new Set<string>() };
        for (const v of variants) {
            const tap = table.variants[v].tap;
            const index = constants.variants[v].tapIndex;
            assert.equal(tap.index, index);
            assert.equal(tap.id, `${constants.network.tapPrefix}${index}`);
            assert.equal(tap.address, [...first.slice(0, 3), first[3] + index].join("."));
            const suffix = (constants.network.firstMacSuffix + index).toString(16).padStart(2, "0");
            assert.equal(tap.mac, `${constants.network.macPrefix}:${suffix}`);
            assert.equal(tap.gateway, constants.network.gateway);
            seen.id.add(tap.id);
            seen.address.add(tap.address);
            seen.mac.add(tap.mac);
        }
        for (const [what, set] of Object.entries(seen)) {
            assert.equal(set.size, variants.length, `TAP ${what}s must be unique per variant`);
        }
        // The first slot is the packaging's one-TAP-VM default.
        const slot0 = Object.values(table.variants).find((v) => v.tap.index === 0);
        assert.equal(slot0?.tap.address, constants.network.firstVmAddress);
    });

    test("mkMicrovmRunner arguments resolve to the variant's defaults", async (t) => {
        if (!requireTools(t, nixTools)) return;
        for (const v of variants) {
            const p = await nixEvalJson<ResolvedParams>({ expr: vmParams(`{ variant = "${v}"; }`) });
            assert.equal(p.name, constants.variants[v].hostname);
            assert.equal(p.networking, "user");
            assert.equal(p.tap, null);
            assert.equal(p.memoryMiB, constants.vm.memoryMiB);
            assert.equal(p.vcpus, constants.vm.vcpus);
            assert.equal(p.debugMode, false, "password login is off unless asked for");
            assert.equal(p.pcpSource, "nixpkgs");
            assert.deepEqual(p.consolePorts, consolePorts(v as Variant));
            const fw = Object.fromEntries(p.forwards.map((f) => [f.name, f.host]));
            assert.deepEqual(fw, { ...forwardedPorts(v as Variant) }, `${v}: forwards`);
            assert.match(p.warnings.join("\n"), /no sshAuthorizedKeys/);
        }
        const tap = await nixEvalJson<ResolvedParams>({
            expr: vmParams(`{ variant = "grafana"; networking = "tap"; name = "g1"; sshAuthorizedKeys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9v test@pe3" ]; memoryMiB = 1536; vcpus = 1; }`),
        });
        assert.equal(tap.name, "g1");
        assert.deepEqual(tap.forwards, [], "a TAP VM forwards no host ports");
        assert.equal(tap.tap?.id, `${constants.network.tapPrefix}${constants.variants.grafana.tapIndex}`);
        assert.equal(tap.memoryMiB, 1536);
        assert.deepEqual(tap.warnings, []);

        const explicit = await nixEvalJson<ResolvedParams>({
            expr: vmParams(
                `{ variant = "base"; networking = "tap"; tap = { id = "pe3tap7"; address = "${constants.network.subnet.replace(/\.0\/\d+$/, ".77")}"; mac = "02:00:00:00:00:77"; }; }`,
            ),
        });
        assert.equal(explicit.tap?.id, "pe3tap7");
        assert.equal(explicit.tap?.gateway, constants.network.gateway);

        const override = await nixEvalJson<ResolvedParams>({ expr: vmParams(`{ variant = "base"; enableEvalTools = true; debugMode = true; }`) });
        assert.equal(override.features.nodeExporter, true);
        assert.equal(override.debugMode, true);
        assert.ok(override.forwards.some((f) => f.name === "nodeExporter" && f.guest === constants.ports.nodeExporter));
    });

    test("the arguments components/microVm.ts passes are accepted and resolve as the program expects", async (t) => {
        if (!requireTools(t, nixTools)) return;
        const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEpe3AAA pcp-eval@pe3";
        const first = constants.network.firstVmAddress.split(".").map(Number);
        const specs: Array<{ spec: VmSpec; debugMode: boolean }> = [
            {
                spec: { name: "eval-1", variant: "eval", networking: "user", memoryMiB: constants.vm.memoryMiB, vcpus: constants.vm.vcpus, source: "pe3" },
                debugMode: false,
            },
            {
                spec: {
                    name: "grafana-tap",
                    variant: "grafana",
                    networking: "tap",
                    memoryMiB: constants.vm.memoryMiB + 512,
                    vcpus: 1,
                    source: "pe3",
                    tap: {
                        device: `${constants.network.tapPrefix}5`,
                        address: [...first.slice(0, 3), first[3] + 5].join("."),
                        mac: `${constants.network.macPrefix}:06`,
                    },
                },
                debugMode: true,
            },
        ];
        for (const { spec, debugMode } of specs) {
            const expr = runnerExpression({ spec, flake: "/nonexistent/nix", system: "x86_64-linux", pcpSource: "upstream", debugMode }, key);
            const m = /\.mkMicrovmRunner (\{.*\})$/.exec(expr);
            assert.ok(m, `runnerExpression calls mkMicrovmRunner: ${expr}`);
            const p = await nixEvalJson<ResolvedParams>({ expr: vmParams(m[1]) });
            assert.equal(p.name, spec.name);
            assert.equal(p.variant, spec.variant);
            assert.equal(p.networking, spec.networking);
            assert.equal(p.memoryMiB, spec.memoryMiB);
            assert.equal(p.vcpus, spec.vcpus);
            assert.equal(p.pcpSource, "upstream");
            assert.equal(p.debugMode, debugMode);
            // No host fact in the runner: its default accelerator; vm.sh passes the one chosen at start (PCP_EVAL_ACCEL).
            assert.equal(p.accel, "kvm");
            if (spec.tap) {
                assert.equal(p.tap?.id, spec.tap.device);
                assert.equal(p.tap?.address, spec.tap.address);
                assert.equal(p.tap?.mac, spec.tap.mac);
                assert.deepEqual(p.forwards, []);
            } else {
                assert.deepEqual(Object.fromEntries(p.forwards.map((f) => [f.name, f.host])), { ...forwardedPorts(spec.variant) });
            }
            assert.deepEqual(p.warnings, []);
        }
    });

    test("the runner takes its accelerator at start: both of microvm.nix's runners, microvm-run picks by PCP_EVAL_ACCEL", async (t) => {
        if (!requireTools(t, nixTools)) return;
        // Stand-ins for nixpkgs and microvm.nix (neither is available offline): nixosSystem
        // returns a runner named after the accel our module tree would get, and the two
        // trivial builders return their text, so the wrapper's wiring can be read.
        const mk = path.join(nixDir, "lib", "mk-microvm.nix");
        const expr = `let
          pkgs = {
            writeShellScript = name: text: { inherit name text; outPath = "/nix/store/run-script"; };
            runCommand = name: env: buildCommand: { inherit name env buildCommand; };
          };
          nixpkgs = {
            legacyPackages.x86_64-linux = pkgs;
            lib.nixosSystem = { modules }: let vm = (builtins.elemAt modules (builtins.length modules - 1)).pcpEval.vm; in {
              config.microvm.declaredRunner = { name = "microvm-qemu-\${vm.hostname}"; outPath = "/nix/store/runner-\${vm.accel}"; };
            };
          };
          r = (import ${mk} { inherit nixpkgs; microvm.nixosModules.microvm = { }; pcpSrc = null; }).mkMicrovmRunner "x86_64-linux" { variant = "base"; name = "t"; };
        in { inherit (r) name buildCommand; runners = [ r.env.passthru.kvm.outPath r.env.passthru.tcg.outPath ]; script = r.env.passthru.run.text; }`;
        const r = await nixEvalJson<{ name: string; buildCommand: string; runners: string[]; script: string }>({ expr });
        assert.deepEqual(r.runners, ["/nix/store/runner-kvm", "/nix/store/runner-tcg"], "one runner per accelerator, from the same arguments");
        assert.match(r.name, /^microvm-qemu-/);
        assert.match(r.buildCommand, /ln -s \/nix\/store\/run-script \$out\/bin\/microvm-run/);
        assert.match(r.buildCommand, /for entry in \/nix\/store\/runner-kvm\/\*/);
        // The dispatch itself, run by bash against stand-in runners.
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe15-accel-"));
        try {
            let script = r.script;
            for (const accel of ["kvm", "tcg"]) {
                fs.mkdirSync(path.join(dir, accel, "bin"), { recursive: true });
                fs.writeFileSync(path.join(dir, accel, "bin", "microvm-run"), `#!/bin/sh\necho ${accel} "$@"\n`, { mode: 0o755 });
                script = script.split(`/nix/store/runner-${accel}/`).join(`${dir}/${accel}/`);
            }
            const runScript = (env: Record<string, string>) => spawnSync("bash", ["-c", script, "microvm-run", "a1"], { encoding: "utf8", env: { PATH: process.env.PATH ?? "", ...env } });
            assert.equal(runScript({}).stdout, "kvm a1\n", "unset: the arguments' default (useKvm, true)");
            assert.equal(runScript({ PCP_EVAL_ACCEL: "tcg" }).stdout, "tcg a1\n");
            assert.equal(runScript({ PCP_EVAL_ACCEL: "kvm" }).stdout, "kvm a1\n");
            const bad = runScript({ PCP_EVAL_ACCEL: "hvf" });
            assert.equal(bad.status, 2);
            assert.match(bad.stderr, /PCP_EVAL_ACCEL must be kvm or tcg, got 'hvf'/);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    test("mkMicrovmRunner rejects bad arguments with the field named", async (t) => {
        if (!requireTools(t, nixTools)) return;
        const outside = "192.0.2.10";
        const cases: Array<[string, RegExp]> = [
            [`{ variant = "nope"; }`, /variant 'nope' is unknown; use one of base, bpf, eval, grafana/],
            [`{ variant = "base"; networking = "bridge"; }`, /networking must be "user" or "tap"/],
            [`{ variant = "base"; tap = { id = "t"; address = "${outside}"; mac = "02:00:00:00:00:01"; }; }`, /tap is only for networking = "tap"/],
            [`{ variant = "base"; networking = "tap"; tap = { id = "t"; }; }`, /tap is missing address, mac/],
            [`{ variant = "base"; networking = "tap"; tap = { id = "t"; address = "${outside}"; mac = "02:00:00:00:00:01"; }; }`, /outside .* \(network\.subnet in nix\/constants\.json\)/],
            [`{ variant = "base"; networking = "tap"; tap = { id = "t"; address = "${constants.network.gateway}"; mac = "02:00:00:00:00:01"; }; }`, /gateway address/],
            [`{ variant = "base"; networking = "tap"; tap = { id = "this-name-is-too-long"; address = "${outside}"; mac = "x"; }; }`, /tap\.id .* 1-15 characters/],
            [`{ variant = "base"; memoryMiB = 64; }`, /below vm\.minMemoryMiB/],
            [`{ variant = "base"; memoryMiB = 2048; }`, /2048 hangs QEMU/],
            [`{ variant = "base"; vcpus = 0; }`, /vcpus must be an integer >= 1/],
            [`{ variant = "base"; pcpSource = "git"; }`, /pcpSource must be "nixpkgs" or "upstream"/],
            [`{ variant = "base"; accel = "hvf"; }`, /accel must be "kvm" or "tcg"/],
            [`{ variant = "base"; useKvm = "no"; }`, /useKvm must be true or false/],
            [`{ variant = "base"; sshAuthorizedKeys = [ "hunter2" ]; }`, /sshAuthorizedKeys must be a list of OpenSSH public key lines/],
            // Parsed, not matched by prefix: a second line, options, another type's blob, a broken blob.
            [`{ variant = "base"; sshAuthorizedKeys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9v c\nssh-rsa AAAAB3NzaC1yc2EAAAADAQAB evil" ]; }`, /sshAuthorizedKeys\[0\] .*one line/],
            [`{ variant = "base"; sshAuthorizedKeys = [ "command=\\"sh\\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9v" ]; }`, /sshAuthorizedKeys\[0\] .*unknown key type/],
            [`{ variant = "base"; sshAuthorizedKeys = [ "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQAB" ]; }`, /sshAuthorizedKeys\[0\] .*blob is not an ssh-ed25519 key/],
            [`{ variant = "base"; sshAuthorizedKeys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9" ]; }`, /sshAuthorizedKeys\[0\] .*not base64/],
            [`{ variant = "base"; enableBpf = "yes"; }`, /enableBpf must be true, false or null/],
            [`{ variant = "base"; name = "bad name"; }`, /name 'bad name' must be/],
        ];
        for (const [args, message] of cases) {
            const err = await nixEvalError(vmParams(args));
            assert.match(err, /mkMicrovmRunner: /, `error for ${args} names the function`);
            assert.match(err, message, `error for ${args}`);
        }
    });

    test("no module writes a clear-text password into the world-readable store; debugMode's hash is of the documented one", async (t) => {
        if (!requireTools(t, ["openssl"])) return;
        const files = walk(nixDir, (f) => f.endsWith(".nix"));
        for (const file of files) {
            const text = fs.readFileSync(file, "utf8");
            assert.doesNotMatch(text, /^\s*(?:[\w.]*\.)?(password|initialPassword)\s*=/m, `${file}: a clear-text password option (use hashedPassword)`);
        }
        const vmNix = fs.readFileSync(path.join(nixDir, "modules", "guest.nix"), "utf8");
        const m = /users\.users\.root\.hashedPassword = "(\$6\$([^$"]+)\$[^"]+)"/.exec(vmNix);
        assert.ok(m, "debugMode sets users.users.root.hashedPassword to a SHA-512 crypt hash");
        const again = await run("openssl", ["passwd", "-6", "-salt", m[2]!, "pcp"]);
        assert.equal(again.stdout.trim(), m[1], "the hash is of the password the README documents (pcp)");
    });

    test("Grafana's anonymous viewer is off unless asked for", () => {
        const text = fs.readFileSync(path.join(nixDir, "modules", "grafana.nix"), "utf8");
        const m = /anonymousViewer = lib\.mkOption \{[^}]*?default = (true|false);/s.exec(text);
        assert.ok(m, "pcpEval.grafana.anonymousViewer is declared with a default");
        assert.equal(m[1], "false");
    });

    test("flake inputs are pinned to revisions and outputs carry the contract's attributes", async (t) => {
        if (!requireTools(t, nixTools)) return;
        const inputs = await nixEvalJson<Record<string, { url: string; flake?: boolean; inputs?: unknown }>>({
            expr: `(import ${flakeNix}).inputs`,
        });
        assert.deepEqual(Object.keys(inputs).sort(), ["grafana-pcp", "microvm", "nixpkgs", "pcp-src"]);
        // A release artefact is pinned by its versioned URL; flake.lock records its hash.
        assert.match(inputs["grafana-pcp"].url, /^https:\/\/github\.com\/performancecopilot\/grafana-pcp\/releases\/download\/v[0-9.]+\/performancecopilot-pcp-app-[0-9.]+\.zip$/);
        assert.equal(inputs["grafana-pcp"].flake, false);
        assert.match(inputs.nixpkgs.url, /^github:NixOS\/nixpkgs\/[0-9a-f]{40}$/);
        assert.match(inputs.microvm.url, /^github:microvm-nix\/microvm\.nix\/[0-9a-f]{40}$/);
        assert.deepEqual(inputs.microvm.inputs, { nixpkgs: { follows: "nixpkgs" } });
        assert.match(inputs["pcp-src"].url, /^github:performancecopilot\/pcp\/[0-9a-f]{40}$/);
        assert.equal(inputs["pcp-src"].flake, false);

        // Evaluate the outputs' attribute names with stand-in inputs: names are
        // computed from the variant table alone, values stay unevaluated.
        const expr = `
          let
            flake = import ${flakeNix};
            lib = {
              genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
              optionalString = c: s: if c then s else "";
              concatMap = f: l: builtins.concatLists (map f l);
              inherit (builtins) listToAttrs;
              nixosSystem = _: throw "offline: no nixpkgs";
            };
            out = flake.outputs { self = out; nixpkgs = { inherit lib; legacyPackages = { }; }; microvm = { }; pcp-src = null; grafana-pcp = null; };
            names = builtins.attrNames;
          in {
            systems = names out.packages;
            packages = names out.packages.x86_64-linux;
            lib = names out.lib.aarch64-linux;
            nixosConfigurations = names out.nixosConfigurations;
            checks = names out.checks.x86_64-linux;
            devShells = names out.devShells.x86_64-linux;
            nixosModules = names out.nixosModules;
          }`;
        const o = await nixEvalJson<Record<string, string[]>>({ expr });
        assert.deepEqual(o.systems, ["aarch64-linux", "x86_64-linux"]);
        const expected = [
            "default",
            "pcp",
            "pcp-container",
            "pcp-upstream",
            ...variants.map((v) => `pcp-microvm-${v}`),
            ...["base", "eval", "grafana"].map((v) => `pcp-microvm-${v}-tap`),
        ].sort();
        assert.deepEqual(o.packages, expected);
        for (const fn of ["mkMicrovm", "mkMicrovmRunner", "mkPcp", "table"]) assert.ok(o.lib.includes(fn), `lib has ${fn}`);
        assert.ok(o.nixosConfigurations.includes("pcp-microvm-grafana-tap"));
        assert.ok(o.nixosConfigurations.includes("pcp-microvm-bpf-aarch64-linux"));
        assert.deepEqual(o.checks, variants.map((v) => `vm-test-${v}`).sort(), "a NixOS test per variant");
        assert.deepEqual(o.devShells, ["default"]);
        for (const m of ["default", "vm", "guest", "pcp", "pmie-test", "node-exporter", "grafana", "bpf"]) assert.ok(o.nixosModules.includes(m), `nixosModules.${m}`);
    });

    test("no number or address of nix/constants.json is restated in another file", () => {
        // Numbers too generic to police anywhere (they occur as timeouts, sizes,
        // counts): ssh 22, grafana 3000, memory/vCPU sizes and timeouts. Each
        // of the others is distinctive enough that a literal copy is a bug.
        const numbers = new Set<number>([
            constants.ports.pmcd,
            constants.ports.pmproxy,
            constants.ports.nodeExporter,
            constants.ports.prometheus,
            ...Object.values(constants.hostForwards),
            constants.consoles.base,
            constants.container.uid,
            constants.container.gid,
        ]);
        for (const v of variants) {
            for (const p of Object.values(forwardedPorts(v))) if (p !== undefined) numbers.add(p);
            for (const p of Object.values(consolePorts(v))) numbers.add(p);
        }
        const first = constants.network.firstVmAddress.split(".").map(Number);
        const strings = new Set<string>([
            constants.network.subnet,
            constants.network.gateway,
            constants.network.bridge,
            constants.network.macPrefix,
            constants.network.nftTable,
            ...variants.map((v) => constants.variants[v].hostname),
            ...variants.map((v) => `${constants.network.tapPrefix}${constants.variants[v].tapIndex}`),
            ...variants.map((v) => [...first.slice(0, 3), first[3] + constants.variants[v].tapIndex].join(".")),
        ]);
        // Where a literal is unavoidable; each entry says why. Keep it short.
        const allowed: Array<{ file: string; token: string; why: string }> = [];

        const files = walk(repoRoot, (f) => /\.(nix|ts|sh|ya?ml|json)$/.test(f)).filter((f) => {
            const rel = path.relative(repoRoot, f);
            return !["nix/constants.json", "package.json", "package-lock.json", "tsconfig.json"].includes(rel);
        });
        assert.ok(files.length > 10);
        const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
        const patterns = [
            ...[...numbers].map((n) => ({ token: String(n), re: new RegExp(`(?<![0-9A-Za-z.])${n}(?![0-9A-Za-z])`) })),
            ...[...strings].map((s) => ({ token: s, re: new RegExp(`(?<![0-9A-Za-z_.-])${escape(s)}(?![0-9A-Za-z_-]|\\.[0-9])`) })),
        ];
        const offences: string[] = [];
        for (const file of files) {
            const rel = path.relative(repoRoot, file);
            const lines = fs.readFileSync(file, "utf8").split("\n");
            const hash = /\.(nix|sh|ya?ml)$/.test(file);
            lines.forEach((raw, i) => {
                // Comments may name an example value; code and data may not.
                const trimmed = raw.trim();
                if (/^(\/\/|\/\*|\*)/.test(trimmed) || (hash && trimmed.startsWith("#"))) return;
                const line = raw.replace(hash ? /\s#\s.*$/ : /\s\/\/\s.*$/, "");
                for (const { token, re } of patterns) {
                    if (re.test(line) && !allowed.some((a) => a.file === rel && a.token === token)) {
                        offences.push(`${rel}:${i + 1}: '${token}' restated: ${trimmed}`);
                    }
                }
            });
        }
        assert.deepEqual(offences, [], "read these from nix/constants.json (or components/constants.ts) instead");
    });
});
