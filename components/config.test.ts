import assert from "node:assert/strict";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { ConfigError, needsDocker, parseConfig, PcpEvalConfig } from "./config";
import { constants, forwardedPorts } from "./constants";
import { slotAddress } from "./plan";


const projectDir = "/srv/pcp-eval";
/** Real public keys (made with ssh-keygen for these tests; the private halves were discarded). */
const ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILfdHAHA7oe9RermUdVrA1FkQ423EEErXW9A2dQwRkfI";
const RSA_BLOB = "AAAAB3NzaC1yc2EAAAADAQABAAAAgQCuEjTLnpodTzXH/7cEa/sGJ7uUWW42pa6Yzzm9uOb6tKHecjxnsfOHjveBhPXyAbH3weiQHkJOv5/VzCilcCsgwf5GRf0nr14EzKp67D+yWuLUE6auwROcx86vZ3wUO4MDa0PRdvxSbypT/UeCWdaQYLKqccX6U1VtuATerB155Q==";

function parse(raw: Record<string, unknown>): PcpEvalConfig {
    const strings = Object.fromEntries(Object.entries(raw).map(([k, v]) => [`pcp-eval:${k}`, typeof v === "string" ? v : JSON.stringify(v)]));
    return parseConfig(strings, "unit", projectDir);
}

function problems(raw: Record<string, unknown>): string[] {
    try {
        parse(raw);
    } catch (err) {
        assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
        return err.problems;
    }
    assert.fail("expected the config to be rejected");
}

function rejects(raw: Record<string, unknown>, key: string, pattern: RegExp): void {
    const found = problems(raw);
    assert.ok(
        found.some((p) => p.includes(key) && pattern.test(p)),
        `expected a problem naming ${key} matching ${pattern}; got:\n${found.join("\n")}`,
    );
}

describe("config defaults", () => {
    it("an empty config is valid and provisions nothing", () => {
        const cfg = parse({});
        assert.equal(cfg.vms.length, 0);
        assert.equal(cfg.container, undefined);
        assert.equal(cfg.bridge, undefined);
        assert.equal(cfg.kubernetes, undefined);
        assert.equal(cfg.flake, path.join(projectDir, "nix"));
        assert.equal(cfg.stateDir, path.join(projectDir, ".pcp-eval-state", "unit"));
        assert.equal(cfg.debugMode, false);
    });

    it("a real one-line OpenSSH key is accepted and kept as given", () => {
        assert.equal(parse({ sshPublicKey: `${ED25519} me@host` }).sshPublicKey, `${ED25519} me@host`);
        assert.equal(parse({ sshPublicKey: ED25519 }).sshPublicKey, ED25519);
    });

    it("a stateDir of its own, absolute or relative, is accepted", () => {
        assert.equal(parse({ stateDir: "/var/tmp/pcp-eval-unit" }).stateDir, "/var/tmp/pcp-eval-unit");
        assert.equal(parse({ stateDir: "state" }).stateDir, path.join(projectDir, "state"));
    });

    it("VM entries take variant, networking and options; TAP VMs get their own device, address and MAC", () => {
        const cfg = parse({ bridgeEnabled: true, vms: ["eval", "grafana:tap", "base:tap,name=lab,memory=2048,vcpus=4,address=10.177.0.99"] });
        assert.deepEqual(
            cfg.vms.map((v) => [v.name, v.variant, v.networking, v.memoryMiB, v.vcpus]),
            [
                ["eval", "eval", "user", constants.vm.memoryMiB, constants.vm.vcpus],
                ["grafana", "grafana", "tap", constants.vm.memoryMiB, constants.vm.vcpus],
                ["lab", "base", "tap", 2048, 4],
            ],
        );
        assert.equal(cfg.vms[0]!.tap, undefined);
        // A TAP VM's slot is its variant's tapIndex, whatever else the list holds (components/plan.ts).
        assert.deepEqual(cfg.vms[1]!.tap, { device: `${constants.network.tapPrefix}2`, address: slotAddress(2), mac: `${constants.network.macPrefix}:03` });
        assert.deepEqual(cfg.vms[2]!.tap, { device: `${constants.network.tapPrefix}0`, address: "10.177.0.99", mac: `${constants.network.macPrefix}:01` });
    });

    it("the container's ports move with containerPortOffset", () => {
        const cfg = parse({ containerEnabled: true, containerPortOffset: 1000 });
        assert.equal(cfg.container!.pmcdPort, constants.hostForwards.pmcd + 1000);
        assert.equal(cfg.container!.pmproxyPort, constants.hostForwards.pmproxy + 1000);
    });
});

describe("config errors name the key and the fix", () => {
    it("unknown variant", () => rejects({ vms: ["grafna"] }, "pcp-eval:vms[0]", /unknown variant "grafna".*use one of base, eval, grafana, bpf/));
    it("unknown networking", () => rejects({ vms: ["eval:bridge"] }, "pcp-eval:vms[0]", /unknown networking "bridge".*:user.*:tap/));
    it("unknown VM option", () => rejects({ vms: ["eval,cpus=2"] }, "pcp-eval:vms[0]", /unknown option "cpus"/));
    it("the same VM twice", () => rejects({ vms: ["eval", "bpf", "eval"] }, "pcp-eval:vms[2]", /"eval" is already defined by pcp-eval:vms\[0\].*name=/));
    it("the same name on two variants", () => rejects({ vms: ["eval,name=x", "bpf,name=x"] }, "pcp-eval:vms[1]", /already defined/));
    it("forwarded ports colliding between two VMs of one variant", () => {
        const found = problems({ vms: ["eval,name=a", "eval,name=b"] });
        const pmcd = forwardedPorts("eval").pmcd;
        assert.ok(found.some((p) => p.includes(`host port ${pmcd}`) && p.includes("pcp-eval:vms[0] (a) pmcd") && p.includes("pcp-eval:vms[1] (b) pmcd")), found.join("\n"));
    });
    it("a second VM of one variant is rejected, whatever its networking: its console ports are the first one's", () => {
        for (const vms of [["eval:tap,name=a", "eval:tap,name=b"], ["eval:tap,name=a", "eval:user,name=b"], ["eval:user,name=a", "eval:tap,name=b"]]) {
            const found = problems({ bridgeEnabled: true, vms });
            assert.ok(found.some((p) => /serial console and .* serial console/.test(p)), found.join("\n"));
            assert.ok(found.some((p) => /virtio console and .* virtio console/.test(p)), found.join("\n"));
            // Only port collisions: the TAP slot both would share is no second problem.
            assert.deepEqual(found.filter((p) => !p.startsWith("host port ")), [], found.join("\n"));
        }
    });
    it("an address= equal to another TAP VM's default address", () =>
        rejects({ bridgeEnabled: true, vms: ["eval:tap", `grafana:tap,address=${slotAddress(1)}`] }, "pcp-eval:vms[1]", /already used by pcp-eval:vms\[0\]/));
    it("the container colliding with the base VM's forwards", () => {
        rejects({ containerEnabled: true, vms: ["base"] }, `host port ${constants.hostForwards.pmcd}`, /the container \(pmcd\).*pcp-eval:containerPortOffset/);
    });
    it("a container offset that moves it onto a VM's forwards", () => {
        const offset = constants.variants.eval.portOffset;
        rejects({ containerEnabled: true, containerPortOffset: offset, vms: ["eval"] }, `host port ${constants.hostForwards.pmcd + offset}`, /claimed by/);
    });
    it("invalid CIDR", () => rejects({ bridgeEnabled: true, bridgeSubnet: "10.177.0.0/33" }, "pcp-eval:bridgeSubnet", /not a valid IPv4 CIDR/));
    it("an invalid subnet with TAP VMs is one problem, the subnet's own (not one more per VM)", () => {
        const found = problems({ bridgeEnabled: true, bridgeSubnet: "bogus", vms: ["eval:tap", "grafana:tap"] });
        assert.equal(found.length, 1, found.join("\n"));
        assert.match(found[0]!, /^pcp-eval:bridgeSubnet: "bogus" is not a valid IPv4 CIDR/);
    });
    it("a valid subnet too small for a TAP VM's slot asks for address=", () =>
        rejects({ bridgeEnabled: true, bridgeSubnet: "192.168.7.0/29", bridgeGateway: "192.168.7.1", vms: ["bpf:tap"] }, "pcp-eval:vms[0]", /bridge subnet 192\.168\.7\.0\/29 is too small.*address=/));
    it("CIDR with host bits set", () => rejects({ bridgeEnabled: true, bridgeSubnet: `${constants.network.gateway}/24` }, "pcp-eval:bridgeSubnet", /not a valid IPv4 CIDR/));
    it("gateway outside the subnet", () => rejects({ bridgeEnabled: true, bridgeGateway: "192.168.1.1" }, "pcp-eval:bridgeGateway", /not a host address inside/));
    it("VM address outside the subnet", () => rejects({ bridgeEnabled: true, vms: ["eval:tap,address=10.178.0.5"] }, "pcp-eval:vms[0]", /outside the bridge subnet/));
    it("VM address equal to the gateway", () => rejects({ bridgeEnabled: true, vms: [`eval:tap,address=${constants.network.gateway}`] }, "pcp-eval:vms[0]", /is the bridge gateway/));
    it("two TAP VMs on one address", () =>
        rejects({ bridgeEnabled: true, vms: ["eval:tap,address=10.177.0.50", "grafana:tap,address=10.177.0.50"] }, "pcp-eval:vms[1]", /already used by pcp-eval:vms\[0\]/));
    it("a TAP VM while the bridge is off", () => rejects({ vms: ["grafana:tap"] }, "pcp-eval:vms[0]", /bridge is off.*pcp-eval:bridgeEnabled true/));
    it("address on a user-networked VM", () => rejects({ vms: ["eval,address=10.177.0.30"] }, "pcp-eval:vms[0]", /address= only applies to tap/));
    it("memory under 256 MiB on one VM", () => rejects({ vms: ["eval,memory=128"] }, "pcp-eval:vms[0]", /memory=128 MiB is under the minimum of 256 MiB/));
    it("default memory under 256 MiB", () => rejects({ vmMemoryMiB: 200 }, "pcp-eval:vmMemoryMiB", /200 MiB is under the minimum/));
    it("an empty flake reference", () => rejects({ flake: "  " }, "pcp-eval:flake", /empty flake reference/));
    it("Kubernetes on without a context", () => rejects({ kubernetesEnabled: true }, "pcp-eval:kubeContext", /no context is set.*pulumi config set pcp-eval:kubeContext/));
    it("a relative containerd socket", () => rejects({ kubernetesEnabled: true, kubeContext: "k3s", kubeContainerd: "run/containerd.sock" }, "pcp-eval:kubeContainerd", /not an absolute path.*\/run\/containerd\/containerd\.sock/));
    it("a non-boolean where a boolean goes", () => rejects({ containerEnabled: "yes" }, "pcp-eval:containerEnabled", /not a boolean/));
    it("a non-integer where an integer goes", () => rejects({ vmVcpus: "two" }, "pcp-eval:vmVcpus", /not an integer/));
    it("an unknown host command backend", () => rejects({ hostCommands: "ssh" }, "pcp-eval:hostCommands", /use command or dynamic/));
    it("an unknown key (a typo)", () => rejects({ vm: ["eval"] }, "pcp-eval:vm", /unknown key/));
    it("an invalid SSH key", () => rejects({ sshPublicKey: "not a key" }, "pcp-eval:sshPublicKey", /not an OpenSSH public key/));
    // stateDir: destroy removes what is below it, and host scripts see it in their arguments.
    it("stateDir at the root", () => rejects({ stateDir: "/" }, "pcp-eval:stateDir", /is the root directory.*pulumi config set pcp-eval:stateDir/));
    it("stateDir is the project", () => rejects({ stateDir: "." }, "pcp-eval:stateDir", /is the project directory.*\.pcp-eval-state/));
    it("stateDir holds the project", () => rejects({ stateDir: "/srv" }, "pcp-eval:stateDir", /holds the project directory/));
    it("stateDir is the home directory", () => rejects({ stateDir: os.homedir() }, "pcp-eval:stateDir", /is the home directory/));
    it("stateDir holds the home directory", () => rejects({ stateDir: path.dirname(os.homedir()) }, "pcp-eval:stateDir", /holds the home directory|is the root directory/));
    it("stateDir with a double quote (JSON injection)", () =>
        rejects({ stateDir: '/tmp/x","publicKey":"ssh-ed25519 AAAA' }, "pcp-eval:stateDir", /quote, backslash or control character/));
    it("stateDir with a single quote", () => rejects({ stateDir: "/tmp/it's" }, "pcp-eval:stateDir", /quote, backslash or control character/));
    it("stateDir with a newline", () => rejects({ stateDir: "/tmp/a\nb" }, "pcp-eval:stateDir", /quote, backslash or control character/));
    // sshPublicKey: parsed, not matched by prefix.
    it("an SSH key followed by a second line", () =>
        rejects({ sshPublicKey: `${ED25519} c\nssh-rsa ${RSA_BLOB} evil` }, "pcp-eval:sshPublicKey", /one line/));
    it("an SSH key with a carriage return", () => rejects({ sshPublicKey: `${ED25519} c\rx` }, "pcp-eval:sshPublicKey", /one line/));
    it("an SSH key of an unknown type", () => rejects({ sshPublicKey: `ssh-foo ${ED25519.split(" ")[1]}` }, "pcp-eval:sshPublicKey", /unknown key type "ssh-foo"/));
    it("an SSH key whose blob is not base64", () => rejects({ sshPublicKey: "ssh-ed25519 AAAA*AAA" }, "pcp-eval:sshPublicKey", /not base64/));
    it("an SSH key whose blob names another type", () =>
        rejects({ sshPublicKey: `ssh-ed25519 ${RSA_BLOB}` }, "pcp-eval:sshPublicKey", /blob is a "ssh-rsa" key, not "ssh-ed25519"/));
    it("an SSH key with a truncated blob", () => rejects({ sshPublicKey: "ssh-ed25519 AAAA" }, "pcp-eval:sshPublicKey", /blob/));
    it("an SSH key with options before the type", () =>
        rejects({ sshPublicKey: `command="sh" ${ED25519}` }, "pcp-eval:sshPublicKey", /unknown key type/));

    it("lists every error at once", () => {
        const found = problems({ flake: "", vms: ["nope", "grafana:tap", "eval,memory=64"], kubernetesEnabled: true });
        assert.ok(found.length >= 5, found.join("\n"));
        for (const needle of ["pcp-eval:flake", "pcp-eval:vms[0]", "pcp-eval:vms[1]", "pcp-eval:vms[2]", "pcp-eval:kubeContext"]) {
            assert.ok(found.some((p) => p.includes(needle)), `missing ${needle} in:\n${found.join("\n")}`);
        }
    });

    it("the error message says nothing was created and lists each problem on its own line", () => {
        try {
            parse({ vms: ["x"], kubernetesEnabled: true });
            assert.fail("expected rejection");
        } catch (err) {
            assert.ok(err instanceof ConfigError);
            assert.match(err.message, /2 problems; nothing was created:\n {2}- .*\n {2}- /);
        }
    });
});

describe("needsDocker: the one rule preflight and the image component share", () => {
    const k8s = { kubernetesEnabled: true, kubeContext: "minikube" };
    const containerd = { ...k8s, kubeContainerd: "/run/containerd/containerd.sock" };
    const cases: Array<[string, Record<string, unknown>, boolean]> = [
        ["nothing that uses the image", { vms: ["eval"] }, false],
        ["the container", { containerEnabled: true }, true],
        ["a minikube, kind or docker-desktop cluster (loaded through Docker)", k8s, true],
        ["a containerd cluster alone (it imports the image itself)", containerd, false],
        ["a containerd cluster and the container", { ...containerd, containerEnabled: true }, true],
    ];
    for (const [what, raw, want] of cases) it(`${what}: ${want}`, () => assert.equal(needsDocker(parse(raw)), want));
});
