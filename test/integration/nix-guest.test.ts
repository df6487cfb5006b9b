/**
 * Offline checks (Debian's nix 2.8, no nixpkgs) of what a MicroVM package
 * passes to the guest modules and what the guest then does with it:
 * - the pcpEval.vm fields modules/guest.nix declares are the data of
 *   nix/lib/vm-fields.nix, and every flake package and nixosConfiguration
 *   passes only those (a TAP record's table-only `index` once broke every
 *   `-tap` package);
 * - the default outputs need no key: key-less means root autologin on the
 *   consoles, SSH closed, nixpkgs' lock-out assertion told so, and a message;
 * - the feature and forward rules of nix/lib/rules.nix equal
 *   components/constants.ts for every variant and every feature override;
 * - $PCP_DIR is the directory whose etc/ holds pcp.conf and pcp.env, in the
 *   NixOS module and in the OCI image.
 * Modules are read with a stand-in lib (test/fixtures/nix/stub-lib.nix):
 * option declarations and mkIf/mkMerge become plain records.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import { constants, forwardedPorts, resolveFeatures, variants, type FeatureOverrides, type Variant } from "../../components/constants";
import { nixEvalJson, nixTools, repoRoot, run, tempDir } from "../helpers/nix";
import { requireTools } from "../helpers/tools";

const nixDir = path.join(repoRoot, "nix");
const stubLib = path.join(repoRoot, "test", "fixtures", "nix", "stub-lib.nix");
const vmFieldsNix = path.join(nixDir, "lib", "vm-fields.nix");
const vmParamsNix = path.join(nixDir, "lib", "vm-params.nix");
const guestNix = path.join(nixDir, "modules", "guest.nix");

interface VmFields {
    vm: string[];
    tap: string[];
    forwards: string[];
    consolePorts: string[];
    features: string[];
}

type Record_ = Record<string, unknown>;

const sorted = (xs: string[]) => [...xs].sort();

/** Fields of `record` that `allowed` does not list. */
function undeclared(record: Record_, allowed: string[]): string[] {
    return Object.keys(record).filter((k) => !allowed.includes(k));
}

/** Every field of a pcpEval.vm value (and of its sub-records) outside vm-fields.nix, as paths. */
function strayFields(vm: Record_, fields: VmFields): string[] {
    const out = undeclared(vm, fields.vm).map((k) => `pcpEval.vm.${k}`);
    const tap = vm.tap as Record_ | null | undefined;
    if (tap) out.push(...undeclared(tap, fields.tap).map((k) => `pcpEval.vm.tap.${k}`));
    for (const fw of (vm.forwards as Record_[] | undefined) ?? []) {
        out.push(...undeclared(fw, fields.forwards).map((k) => `pcpEval.vm.forwards.*.${k}`));
    }
    if (vm.consolePorts) out.push(...undeclared(vm.consolePorts as Record_, fields.consolePorts).map((k) => `pcpEval.vm.consolePorts.${k}`));
    if (vm.features) out.push(...undeclared(vm.features as Record_, fields.features).map((k) => `pcpEval.vm.features.${k}`));
    return out;
}

/** The flake's outputs with stand-in inputs: nixosSystem returns its arguments. */
const flakeWithStubs = `
  let
    flake = import ${path.join(nixDir, "flake.nix")};
    lib = {
      genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
      optionalString = c: s: if c then s else "";
      concatMap = f: l: builtins.concatLists (map f l);
      inherit (builtins) listToAttrs;
      nixosSystem = args: { config.microvm.declaredRunner = args; inherit args; };
    };
    # A runner package holds the KVM and the TCG runner (mk-microvm.nix): passthru.kvm / .tcg.
    pkgs = { writeShellScript = name: _: "/stub/\${name}"; runCommand = _: env: _: env; };
    out = flake.outputs {
      self = out;
      nixpkgs = { inherit lib; legacyPackages = { x86_64-linux = pkgs; aarch64-linux = pkgs; }; };
      microvm = { nixosModules.microvm = "microvm.nixosModules.microvm"; };
      pcp-src = "/pcp-src";
      grafana-pcp = "/grafana-pcp";
    };
    # The module mk-microvm.nix builds from vm-params.nix: the one setting pcpEval.vm.
    vmOf = args: (builtins.head (builtins.filter (m: builtins.isAttrs m && m ? pcpEval) args.modules)).pcpEval.vm;
    runners = builtins.filter (n: builtins.substring 0 12 n == "pcp-microvm-") (builtins.attrNames out.packages.x86_64-linux);
  in`;

/** modules/guest.nix read with the stand-in lib for the pcpEval.vm value of vm-params.nix args. */
const guestFor = (args: string) => `
  let
    lib = import ${stubLib};
    vmConfig = (import ${vmParamsNix} ${args}).vmConfig;
    m = import ${guestNix} { config = { pcpEval = { vm = vmConfig; pcpSrc = null; }; }; inherit lib; pkgs = { }; };
    parts = m.config.contents;
    plain = builtins.head (builtins.filter (p: !(p ? _type)) parts);
    when = pred: builtins.head (builtins.filter (p: (p._type or "") == "if" && pred p.content) parts);
    keyless = when (c: c ? services && c.services ? getty);
    debug = when (c: c ? users && c.users ? users && c.users.users ? root);
  in {
    ssh = plain.services.openssh.enable;
    sshSettings = plain.services.openssh.settings;
    rootKeys = plain.users.users.root.openssh.authorizedKeys.keys;
    mutableUsers = plain.users.mutableUsers;
    below = plain.services.below.enable;
    keyless = {
      on = keyless.condition;
      autologinUser = keyless.content.services.getty.autologinUser;
      helpLine = keyless.content.services.getty.helpLine;
      allowNoPasswordLogin = keyless.content.users.allowNoPasswordLogin;
      warnings = keyless.content.warnings;
    };
    debug = { on = debug.condition; hashedPassword = debug.content.users.users.root.hashedPassword; };
  }`;

interface GuestView {
    ssh: boolean;
    sshSettings: { PasswordAuthentication: boolean; KbdInteractiveAuthentication: boolean; PermitRootLogin: string };
    rootKeys: string[];
    mutableUsers: boolean;
    below: boolean;
    keyless: { on: boolean; autologinUser: string; helpLine: string; allowNoPasswordLogin: boolean; warnings: string[] };
    debug: { on: boolean; hashedPassword: string };
}

describe("nix/: guest fields, key-less VMs, feature rules, PCP_DIR (offline)", () => {
    test("modules/guest.nix declares exactly the fields of nix/lib/vm-fields.nix, each with a default", async (t) => {
        if (!requireTools(t, nixTools)) return;
        const r = await nixEvalJson<{ fields: VmFields; declared: VmFields; defaults: Record_ }>({
            expr: `
              let
                lib = import ${stubLib};
                m = import ${guestNix} { config = { }; inherit lib; pkgs = { }; };
                o = m.options.pcpEval.vm;
                names = builtins.attrNames;
              in {
                fields = import ${vmFieldsNix};
                declared = {
                  vm = names o;
                  tap = names o.tap.type.nullOr.submodule.options;
                  forwards = names o.forwards.type.listOf.submodule.options;
                  consolePorts = names o.consolePorts;
                  features = names o.features;
                };
                defaults = builtins.mapAttrs (n: opt: opt.default or (builtins.mapAttrs (_: sub: sub.default) opt)) o;
              }`,
        });
        for (const k of Object.keys(r.fields) as Array<keyof VmFields>) {
            assert.deepEqual(r.declared[k], sorted(r.fields[k]), `${k}: declared options vs lib/vm-fields.nix`);
        }
        // Usable alone: every top-level option has a default, and the defaults
        // are a key-less base VM.
        assert.deepEqual(sorted(Object.keys(r.defaults)), sorted(r.fields.vm));
        assert.equal(r.defaults.hostname, constants.variants.base.hostname);
        assert.deepEqual(r.defaults.sshAuthorizedKeys, []);
        assert.equal(r.defaults.debugMode, false);
        assert.deepEqual(r.defaults.features, resolveFeatures("base"));
    });

    test("every flake package and nixosConfiguration passes pcpEval.vm with declared fields only, and no key", async (t) => {
        if (!requireTools(t, nixTools)) return;
        const fields = await nixEvalJson<VmFields>({ file: vmFieldsNix });
        const r = await nixEvalJson<{ packages: Record<string, Record_>; tcg: Record<string, Record_>; nixosConfigurations: Record<string, Record_> }>({
            expr: `${flakeWithStubs} {
              packages = builtins.listToAttrs (map (n: { name = n; value = vmOf out.packages.x86_64-linux.\${n}.passthru.kvm; }) runners);
              tcg = builtins.listToAttrs (map (n: { name = n; value = vmOf out.packages.x86_64-linux.\${n}.passthru.tcg; }) runners);
              nixosConfigurations = builtins.mapAttrs (_: c: vmOf c.args) out.nixosConfigurations;
            }`,
        });
        const expected = [...variants.map((v) => `pcp-microvm-${v}`), ...["base", "eval", "grafana"].map((v) => `pcp-microvm-${v}-tap`)];
        assert.deepEqual(sorted(Object.keys(r.packages)), sorted(expected));
        // The accelerator is picked when the VM starts: each package holds a KVM and a TCG runner of the same VM.
        for (const name of expected) {
            assert.equal(r.packages[name]!.accel, "kvm", `${name}: passthru.kvm runs under KVM`);
            assert.equal(r.tcg[name]!.accel, "tcg", `${name}: passthru.tcg runs under TCG`);
            assert.deepEqual({ ...r.tcg[name], accel: "kvm" }, r.packages[name], `${name}: the two runners differ in the accelerator only`);
        }
        assert.equal(Object.keys(r.nixosConfigurations).length, expected.length * 2, "x86_64 and aarch64 configurations");
        for (const [what, set] of [
            ["packages", r.packages],
            ["nixosConfigurations", r.nixosConfigurations],
        ] as const) {
            for (const [name, vm] of Object.entries(set)) {
                assert.deepEqual(strayFields(vm, fields), [], `${what}.${name}: fields modules/guest.nix does not declare`);
                assert.deepEqual(vm.sshAuthorizedKeys, [], `${what}.${name}: the default outputs take no key`);
                assert.equal(vm.debugMode, false, `${what}.${name}: no password login by default`);
                const tap = vm.tap as Record_ | null;
                if (name.includes("-tap")) {
                    assert.ok(tap, `${what}.${name}: a TAP record`);
                    assert.deepEqual(sorted(Object.keys(tap)), sorted(fields.tap), `${what}.${name}: every TAP field, and only those`);
                    assert.deepEqual(vm.forwards, [], `${what}.${name}: a TAP VM forwards nothing`);
                } else {
                    assert.equal(tap, null, `${what}.${name}: no TAP record`);
                }
            }
        }
    });

    test("a key-less VM logs root in on the consoles, keeps SSH closed, and says so; a key opens SSH by key only", async (t) => {
        if (!requireTools(t, nixTools)) return;
        const keyless = await nixEvalJson<GuestView>({ expr: guestFor(`{ variant = "eval"; }`) });
        assert.equal(keyless.ssh, false, "SSH is closed without a key");
        assert.equal(keyless.keyless.on, true);
        assert.equal(keyless.keyless.autologinUser, "root");
        // nixpkgs' users-groups assertion (root or wheel needs a password or a
        // key when mutableUsers is false) is told the console login is meant.
        assert.equal(keyless.mutableUsers, false);
        assert.equal(keyless.keyless.allowNoPasswordLogin, true);
        assert.equal(keyless.debug.on, false);
        const ports = (await nixEvalJson<{ consolePorts: { serial: number; virtio: number } }>({ expr: `import ${vmParamsNix} { variant = "eval"; }` })).consolePorts;
        for (const message of [keyless.keyless.helpLine, ...keyless.keyless.warnings]) {
            assert.match(message, /no sshAuthorizedKeys/);
            assert.match(message, /SSH is closed/);
            assert.ok(message.includes(`127.0.0.1:${ports.serial}`) && message.includes(`127.0.0.1:${ports.virtio}`), `names both consoles: ${message}`);
        }
        assert.equal(keyless.below, true, "below runs on the eval variant");

        const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9v test@pe13";
        const keyed = await nixEvalJson<GuestView>({ expr: guestFor(`{ variant = "base"; sshAuthorizedKeys = [ "${key}" ]; }`) });
        assert.equal(keyed.ssh, true);
        assert.equal(keyed.keyless.on, false);
        assert.deepEqual(keyed.rootKeys, [key]);
        assert.equal(keyed.sshSettings.PasswordAuthentication, false);
        assert.equal(keyed.sshSettings.KbdInteractiveAuthentication, false);
        assert.equal(keyed.sshSettings.PermitRootLogin, "prohibit-password");
        assert.equal(keyed.below, false, "below only where the variant (or enableBelow) says");

        const debug = await nixEvalJson<GuestView>({ expr: guestFor(`{ variant = "base"; debugMode = true; }`) });
        assert.equal(debug.ssh, true);
        assert.equal(debug.keyless.on, false, "debug mode has a password, so it is not the key-less console VM");
        assert.equal(debug.debug.on, true);
        assert.match(debug.debug.hashedPassword, /^\$6\$/, "a SHA-512 crypt hash, no clear text in the store");
        assert.equal(debug.sshSettings.PasswordAuthentication, true);
    });

    test("feature and forward rules: nix/lib/rules.nix (through vm-params.nix) equals components/constants.ts for every variant x override", async (t) => {
        if (!requireTools(t, nixTools)) return;
        const switches = ["Pmlogger", "EvalTools", "PmieTest", "Grafana", "Bpf", "Below"];
        interface Case {
            variant: Variant;
            overrides: Record<string, boolean | null>;
            features: Record<string, boolean>;
            forwards: Array<{ name: string; host: number; guest: number }>;
        }
        const cases = await nixEvalJson<Case[]>({
            expr: `
              let
                vp = import ${vmParamsNix};
                values = [ null true false ];
                names = [ ${switches.map((s) => `"enable${s}"`).join(" ")} ];
                combos = builtins.foldl' (acc: n: builtins.concatLists (map (c: map (v: c // { \${n} = v; }) values) acc)) [ { } ] names;
                variants = builtins.attrNames (import ${path.join(nixDir, "lib", "ports.nix")}).variants;
              in builtins.concatLists (map (variant: map (o:
                let p = vp ({ inherit variant; } // o); in { inherit variant; overrides = o; inherit (p) features forwards; }
              ) combos) variants)`,
        });
        assert.equal(cases.length, variants.length * 3 ** switches.length);
        for (const c of cases) {
            const overrides: FeatureOverrides = {};
            for (const s of switches) {
                const v = c.overrides[`enable${s}`];
                if (v !== null) overrides[(s[0].toLowerCase() + s.slice(1)) as keyof FeatureOverrides] = v;
            }
            const where = `${c.variant} ${JSON.stringify(overrides)}`;
            assert.deepEqual(c.features, { ...resolveFeatures(c.variant, overrides) }, `${where}: features`);
            assert.deepEqual(Object.fromEntries(c.forwards.map((f) => [f.name, f.host])), { ...forwardedPorts(c.variant, overrides) }, `${where}: forwards`);
            for (const f of c.forwards) assert.equal(f.guest, constants.ports[f.name as keyof typeof constants.ports], `${where}: ${f.name} guest port`);
        }
    });

    test("PCP_DIR is the directory whose etc/ holds pcp.conf and pcp.env, in the NixOS module and in the image", async (t) => {
        if (!requireTools(t, nixTools)) return;
        const pkg = "/nix/store/00000000000000000000000000000000-pcp-7.0.0";
        const r = await nixEvalJson<{ layout: Record<string, string>; module: Record<string, string>; image: string[] }>({
            expr: `
              let
                lib = import ${stubLib};
                pcp = "${pkg}";
                layout = import ${path.join(nixDir, "pkgs", "pcp-layout.nix")} pcp;
                m = import ${path.join(nixDir, "modules", "pcp.nix")} {
                  config = { services.pcp = { enable = true; package = pcp; pmdas = { }; }; pcpEval.pcpSrc = null; };
                  inherit lib;
                  pkgs = { };
                };
                image = import ${path.join(nixDir, "pkgs", "container.nix")} {
                  inherit lib pcp;
                  pkgs = {
                    runCommand = name: attrs: script: name;
                    callPackage = f: args: "layout-check";
                    dockerTools.buildLayeredImage = args: args;
                    bashInteractive = "bash";
                    coreutils = "coreutils";
                  };
                };
              in {
                inherit layout;
                module = m.config.content.services.pcp.environment;
                image = image.config.Env;
              }`,
        });
        assert.equal(r.layout.dir, `${pkg}/share/pcp`);
        assert.equal(r.layout.conf, `${r.layout.dir}/etc/pcp.conf`);
        assert.equal(r.layout.env, `${r.layout.dir}/etc/pcp.env`);
        // What PCP's scripts and libpcp do with it: $PCP_DIR/etc/pcp.env, $PCP_DIR/etc/pcp.conf.
        assert.equal(`${r.module.PCP_DIR}/etc/pcp.env`, r.layout.env, "module: $PCP_DIR/etc/pcp.env");
        assert.equal(r.module.PCP_CONF, `${r.module.PCP_DIR}/etc/pcp.conf`);
        const env = Object.fromEntries(r.image.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));
        assert.equal(`${env.PCP_DIR}/etc/pcp.env`, r.layout.env, "image: $PCP_DIR/etc/pcp.env");
        assert.equal(env.PCP_CONF, `${env.PCP_DIR}/etc/pcp.conf`);
    });

    test("checks/vm-test.nix renders a valid Python test script per variant, with the issue's assertions", async (t) => {
        if (!requireTools(t, [...nixTools, "python3"])) return;
        // A stand-in nixpkgs: testers.runNixOSTest returns its argument, and
        // nixos/tests/ssh-keys.nix gives a key pair as nixpkgs' does.
        const dir = tempDir("pe13-");
        t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
        fs.mkdirSync(path.join(dir, "nixos", "tests"), { recursive: true });
        fs.writeFileSync(
            path.join(dir, "nixos", "tests", "ssh-keys.nix"),
            `pkgs: { snakeOilPublicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9v snakeoil"; snakeOilPrivateKey = "/nix/store/snakeoil-key"; }\n`,
        );
        const expected: Record<Variant, RegExp[]> = {
            base: [/pmlogger writes an archive that grows/, /Permission denied \(publickey\)/, /debug\.succeed\("sshpass -p pcp/, /keyless\.fail\("systemctl is-active sshd/],
            eval: [/grep -q cpu_elevated/, /node_exporter answers/, /below\.service/],
            grafana: [/activeTargets/, /datasources\/uid\/prometheus\/health/, /node_load1/, /pcp-eval-grafana-app\.service/, /pmapi\/fetch\?context=\{ctx\}&names=kernel\.all\.load/, /series\/query\?expr=kernel\.all\.load/],
            bpf: [/bpf\.runq\.latency bpf\.disk\.all\.latency/],
        };
        for (const v of variants) {
            const r = await nixEvalJson<{ name: string; nodes: string[]; script: string }>({
                expr: `
                  let
                    lib = (import ${stubLib}) // {
                      concatMapStrings = f: l: builtins.concatStringsSep "" (map f l);
                      optionalString = c: s: if c then s else "";
                    };
                    pkgs = { inherit lib; path = "${dir}"; curl = "curl"; jq = "jq"; sshpass = "sshpass"; testers.runNixOSTest = test: test; };
                    test = import ${path.join(nixDir, "checks", "vm-test.nix")} { inherit pkgs; pcpSrc = null; variant = "${v}"; };
                  in { inherit (test) name; nodes = builtins.attrNames test.nodes; script = test.testScript; }`,
            });
            assert.equal(r.name, `pcp-eval-${v}`);
            assert.deepEqual(r.nodes, v === "base" ? ["debug", "keyless", "machine"] : ["machine"]);
            const file = path.join(dir, `${v}.py`);
            fs.writeFileSync(file, r.script);
            const parsed = await run("python3", ["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())", file]);
            assert.equal(parsed.code, 0, `${v}: the test script is not valid Python:\n${parsed.stderr}`);
            for (const common of [/pminfo -h localhost -f kernel\.all\.load/, /bash --login -c 'pminfo -f kernel\.all\.load'/, /stat -c '%U %a' \/run\/pcp/, /-i \/root\/id root@localhost/]) {
                assert.match(r.script, common, `${v}: ${common}`);
            }
            for (const re of expected[v]) assert.match(r.script, re, `${v}: ${re}`);
        }
    });

    test("the PCP layout check builds for the expected layout and fails, saying why, for a sysconfdir=/etc build or a missing part", async (t) => {
        if (!requireTools(t, [...nixTools, "nix-build"])) return;
        const dir = tempDir("pe13-");
        t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
        const makeTree = (name: string, skip: string[] = []): string => {
            const tree = path.join(dir, name);
            const files: Array<[string, string, number]> = [
                ["share/pcp/etc/pcp.env", "# pcp.env\n", 0o644],
                ["var/lib/pcp/pmns/root", "root {\n}\n", 0o644],
                ...["pmcd", "pmproxy", "pmlogger_check"].map((d): [string, string, number] => [`libexec/pcp/bin/${d}`, "#!/bin/sh\n", 0o755]),
            ];
            for (const [rel, text, mode] of files) {
                if (skip.includes(rel)) continue;
                fs.mkdirSync(path.dirname(path.join(tree, rel)), { recursive: true });
                fs.writeFileSync(path.join(tree, rel), text, { mode });
            }
            return tree;
        };
        const build = (tree: string, sysconf: string) =>
            run("nix-build", [path.join(repoRoot, "test", "fixtures", "nix", "layout-check.nix"), "--arg", "tree", tree, "--argstr", "sysconf", sysconf, "--no-out-link"], undefined, 300_000);

        const good = await build(makeTree("good"), "@OUT@/share/pcp/etc/pcp");
        assert.equal(good.code, 0, `the expected layout passes:\n${good.stderr}`);

        const etc = await build(makeTree("etc"), "/etc/pcp");
        assert.notEqual(etc.code, 0);
        assert.match(etc.stderr, /PCP_SYSCONF_DIR=\/etc\/pcp \(a sysconfdir=\/etc build\)/);
        assert.match(etc.stderr, /Use pcpSource = "upstream", or describe the package's layout in passthru\.pcpLayout/);

        const noPmns = await build(makeTree("nopmns", ["var/lib/pcp/pmns/root"]), "@OUT@/share/pcp/etc/pcp");
        assert.notEqual(noPmns.code, 0);
        assert.match(noPmns.stderr, /no merged root PMNS/);

        const noEnv = await build(makeTree("noenv", ["share/pcp/etc/pcp.env"]), "@OUT@/share/pcp/etc/pcp");
        assert.notEqual(noEnv.code, 0);
        assert.match(noEnv.stderr, /no pcp\.env at .*\/share\/pcp\/etc\/pcp\.env \(\$PCP_DIR\/etc\/pcp\.env/);
    });
});
