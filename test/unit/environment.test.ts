/**
 * The resource graph per configuration, recorded under Pulumi's mocks: which
 * resources exist, who parents them, the dependency edges the engine is
 * given, and the stack outputs. Parts that are off must be absent.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import YAML from "yaml";
import { parseConfig, PcpEvalConfig } from "../../components/config";
import * as pulumi from "@pulumi/pulumi";
import { consolePorts, constants, forwardedPorts } from "../../components/constants";
import { slotAddress } from "../../components/plan";
import { grafanaCatalog } from "../../components/grafanaCatalog";
import { Environment, provisionEnvironment } from "../../components/environment";
import { fakeStorePaths, recordProgram, Recording, resolve } from "../helpers/mocks";


const projectDir = path.resolve(__dirname, "../..");

function stackConfig(stack: string): Record<string, string> {
    const doc = YAML.parse(fs.readFileSync(path.join(projectDir, `Pulumi.${stack}.yaml`), "utf8")) as { config: Record<string, unknown> };
    return Object.fromEntries(Object.entries(doc.config).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
}

function configOf(raw: Record<string, unknown>, stack = "test"): PcpEvalConfig {
    const strings = Object.fromEntries(Object.entries(raw).map(([k, v]) => [`pcp-eval:${k}`, typeof v === "string" ? v : JSON.stringify(v)]));
    return parseConfig(strings, stack, projectDir);
}

async function record(cfg: PcpEvalConfig): Promise<{ recording: Recording; env: Environment; outputs: Record<string, unknown> }> {
    const { recording, result } = await recordProgram(() => provisionEnvironment(cfg, { kvmVerdict: "/cache/pcp-eval/kvm-probe", vmUser: "pcp-tester", storePaths: fakeStorePaths }), { stack: cfg.stack });
    const outputs: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(result.outputs)) outputs[k] = await resolve(v as never);
    return { recording, env: result, outputs };
}

const componentTypes = (r: Recording) => r.resources.filter((x) => !x.custom).map((x) => `${x.type} ${x.name}`).sort();

describe("dev stack (Pulumi.dev.yaml)", () => {
    const cfg = parseConfig(stackConfig("dev"), "dev", projectDir);

    it("has every part: container, bridge with one TAP, three VMs, DaemonSet", async () => {
        const { recording } = await record(cfg);
        assert.deepEqual(componentTypes(recording), [
            "pcp-eval:index:GrafanaAdmin grafana-admin",
            "pcp-eval:index:MicroVm vm-bpf",
            "pcp-eval:index:MicroVm vm-eval",
            "pcp-eval:index:MicroVm vm-grafana",
            "pcp-eval:index:NixBuild pcp-image-image",
            "pcp-eval:index:NixBuild vm-bpf-runner",
            "pcp-eval:index:NixBuild vm-eval-runner",
            "pcp-eval:index:NixBuild vm-grafana-runner",
            "pcp-eval:index:OciImage pcp-image",
            "pcp-eval:index:PcpDaemonSet pcp-daemonset",
            "pcp-eval:index:SshKey ssh-key",
            "pcp-eval:index:StateDir state",
            "pcp-eval:index:TapBridge network",
            "pulumi:pulumi:Stack pcp-eval-dev",
        ].filter((s) => !s.startsWith("pulumi:pulumi:Stack")));
        const tapCommands = recording.resources.filter((r) => r.name.startsWith("network-pcptap"));
        assert.deepEqual(tapCommands.map((r) => r.name), ["network-pcptap2"]);
        assert.ok(recording.has("pcp-image-container"));
        assert.ok(recording.has("pcp-daemonset-daemonset"));
    });

    it("gives the TAP VM, and only it, an edge to its TAP device", async () => {
        const { recording } = await record(cfg);
        assert.ok(recording.dependencyNames("vm-grafana-process").includes("network-pcptap2"));
        assert.ok(!recording.dependencyNames("vm-eval-process").some((n) => n.startsWith("network")));
        assert.ok(!recording.dependencyNames("vm-bpf-process").some((n) => n.startsWith("network")));
        assert.ok(recording.dependencyNames("network-pcptap2").includes("network-bridge"));
    });

    it("makes the DaemonSet wait for the image loaded into the cluster, which waits for the docker load", async () => {
        const { recording } = await record(cfg);
        assert.ok(recording.dependencyNames("pcp-daemonset-daemonset").includes("pcp-daemonset-cluster-load"));
        // On local.Command, users of the load wait on its HostState (components/hostCommand.ts), which waits on it.
        assert.ok(recording.dependencyNames("pcp-daemonset-cluster-load").includes("pcp-image-load-state"));
        assert.ok(recording.dependencyNames("pcp-image-load-state").includes("pcp-image-load"));
    });

    it("keeps independent parts free of edges between them, so they provision in parallel", async () => {
        const { recording } = await record(cfg);
        const vmNames = ["vm-eval", "vm-grafana", "vm-bpf"];
        for (const vm of vmNames) {
            const deps = recording.resources
                .filter((r) => r.name.startsWith(vm))
                .flatMap((r) => recording.dependencyNames(r.name));
            for (const other of vmNames.filter((v) => v !== vm)) {
                assert.ok(!deps.some((d) => d.startsWith(other)), `${vm} must not wait for ${other}`);
            }
            assert.ok(!deps.some((d) => d.startsWith("pcp-image")), `${vm} must not wait for the image`);
        }
        assert.ok(!recording.dependencyNames("pcp-image-container").some((d) => d.startsWith("vm-") || d.startsWith("network")));
    });

    it("puts every resource after the state directory, so destroy removes the directory last", async () => {
        const { recording } = await record(cfg);
        const others = recording.resources.filter((r) => r.name !== "state" && r.name !== "state-dir");
        assert.ok(others.length > 20);
        for (const r of others) assert.ok(recording.dependencyNames(r.name).includes("state-dir"), `${r.name} must depend on state-dir`);
        assert.deepEqual(recording.dependencyNames("state-dir"), []);
    });

    it("parents every resource to a component, never to the stack directly", async () => {
        const { recording } = await record(cfg);
        const topLevel = recording.resources.filter((r) => r.parent === "" || r.parent.includes("pulumi:pulumi:Stack"));
        for (const r of topLevel) assert.equal(r.custom, false, `${r.name} (${r.type}) must be inside a component`);
    });

    it("exports URLs for the grafana VM on its TAP address and pmproxy URLs per target", async () => {
        const { outputs } = await record(cfg);
        // The grafana variant's slot (tapIndex 2, components/plan.ts).
        const tapAddress = slotAddress(2);
        assert.equal(outputs.grafanaUrl, `http://${tapAddress}:${constants.ports.grafana}`);
        assert.equal(outputs.prometheusUrl, `http://${tapAddress}:${constants.ports.prometheus}`);
        const evalPorts = forwardedPorts("eval");
        assert.deepEqual(outputs.pmproxyUrls, {
            container: `http://127.0.0.1:${constants.hostForwards.pmproxy}`,
            eval: `http://127.0.0.1:${evalPorts.pmproxy}`,
            grafana: `http://${tapAddress}:${constants.ports.pmproxy}`,
            bpf: `http://127.0.0.1:${forwardedPorts("bpf").pmproxy}`,
        });
        assert.deepEqual(outputs.consolePorts, { eval: consolePorts("eval"), grafana: consolePorts("grafana"), bpf: consolePorts("bpf") });
        const ssh = outputs.sshCommands as Record<string, string>;
        assert.match(ssh.eval!, new RegExp(`-p ${evalPorts.ssh} root@127\\.0\\.0\\.1$`));
        assert.match(ssh.eval!, /-i \S+\/ssh\/id_ed25519 /);
        const kube = outputs.kubernetes as Record<string, unknown>;
        assert.deepEqual(Object.keys(kube).sort(), ["context", "daemonSet", "namespace", "pmcdEndpoints", "pmproxyUrls"]);
        assert.deepEqual([kube.namespace, kube.daemonSet, kube.context], ["pcp", constants.kubernetes.daemonSetName, "minikube"]);
        assert.match(String(outputs.summary), /grafana: grafana VM \(tap\)/);
    });

    it("with useSudo only the network goes through sudo: QEMU, the VM runners and Nix builds run as the user", async () => {
        const sudoCfg = configOf({ useSudo: true, bridgeEnabled: true, containerEnabled: true, vms: ["eval", "grafana:tap"] });
        const { recording } = await record(sudoCfg);
        const withSudo = recording.resources
            .filter((r) => r.custom && /\bsudo\b/.test(JSON.stringify(r.inputs)))
            .map((r) => r.name);
        assert.ok(withSudo.length > 0, "the network resources carry the sudo setting");
        for (const name of withSudo) assert.match(name, /^network(-|$)/, `${name} runs something through sudo`);
        for (const r of recording.resources.filter((x) => x.custom)) {
            const text = JSON.stringify(r.inputs);
            if (/vm\.sh|nix-build\.sh|microvm-run/.test(text)) assert.doesNotMatch(text, /\bsudo\b/, `${r.name} must not use sudo`);
        }
    });

    it("quotes the identity path in sshCommands, so a stateDir with a space still pastes as one argument", async () => {
        const spaced = configOf({ stateDir: "/var/tmp/pcp eval state", vms: ["eval"] });
        const { outputs } = await record(spaced);
        const ssh = (outputs.sshCommands as Record<string, string>).eval!;
        assert.match(ssh, / -i '\/var\/tmp\/pcp eval state\/ssh\/id_ed25519' /);
    });

    it("exports a direct URL per provisioned dashboard and the Grafana admin password as a secret", async () => {
        const { env, outputs, recording } = await record(cfg);
        // The grafana variant's TAP slot (tapIndex 2, components/plan.ts).
        const grafanaUrl = `http://${slotAddress(2)}:${constants.ports.grafana}`;
        assert.deepEqual(
            outputs.grafanaDashboards,
            Object.fromEntries(Object.keys(grafanaCatalog.dashboards).map((uid) => [uid, `${grafanaUrl}/d/${uid}`])),
        );
        assert.ok(Object.keys(outputs.grafanaDashboards as object).length >= 2, "the app's dashboard and ours");
        assert.equal(outputs.grafanaAdminPassword, "mock-grafana-password");
        assert.equal(await pulumi.isSecret(env.outputs.grafanaAdminPassword!), true);
        // Read over SSH from the grafana VM once it is up, with the stack's key; a new boot reads it again.
        const read = recording.byName("grafana-admin-read");
        const host = slotAddress(2).replace(/\./g, "\\.");
        assert.match(String(read.inputs.create), new RegExp(`grafana-password\\.sh read --host ${host} --port 22 --user root --identity \\S+/ssh/id_ed25519`));
        assert.ok(recording.dependencyNames("grafana-admin-read").includes("vm-grafana-process"), "after the VM is up");
    });

    it("builds each VM through the flake's parametric function with the stack's key and no password login", async () => {
        const { recording } = await record(cfg);
        const create = String(recording.byName("vm-grafana-runner-build").inputs.create);
        assert.match(create, /nix-build\.sh build/);
        assert.match(create, /mkMicrovmRunner/);
        assert.match(create, /variant = \\?"grafana\\?"/);
        assert.match(create, /networking = \\?"tap\\?"/);
        assert.match(create, new RegExp(`address = \\\\?"${slotAddress(2).replace(/\./g, "\\.")}\\\\?"`));
        assert.match(create, /ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockKey/);
        assert.match(create, /debugMode = false/);
        // The accelerator is no input of the runner: the VM picks it when it starts.
        assert.doesNotMatch(create, /useKvm|accel/);
        const process = recording.byName("vm-grafana-process").inputs;
        assert.equal(process.accel, "auto");
        assert.equal(process.kvmVerdict, "/cache/pcp-eval/kvm-probe");
    });
});

describe("other configurations", () => {
    it("base VM only: one VM, no bridge, image, container, DaemonSet or cluster provider", async () => {
        const { recording, outputs } = await record(configOf({ vms: ["base"] }));
        const names = recording.resources.map((r) => r.name);
        assert.ok(names.includes("vm-base"));
        for (const absent of ["network", "pcp-image", "pcp-daemonset"]) {
            assert.ok(!names.some((n) => n.startsWith(absent)), `${absent} must be absent`);
        }
        assert.ok(!recording.resources.some((r) => r.type.startsWith("docker:") || r.type.startsWith("kubernetes:") || r.type.startsWith("pulumi:providers:kubernetes")));
        assert.deepEqual(Object.keys(outputs).sort(), ["consolePorts", "pmcdEndpoints", "pmproxyUrls", "sshCommands", "stateDir", "summary", "targets"]);
        assert.deepEqual(outputs.pmcdEndpoints, { base: `127.0.0.1:${forwardedPorts("base").pmcd}` });
    });

    it("the image goes through Docker exactly when needsDocker says: a containerd cluster alone takes a reference, no docker load", async () => {
        const k8s = { kubernetesEnabled: true, kubeContext: "k3s", kubeContainerd: "/run/k3s/containerd/containerd.sock" };
        const alone = (await record(configOf(k8s))).recording.resources.map((r) => r.name);
        assert.ok(alone.includes("pcp-image-ref") && !alone.includes("pcp-image-load"), alone.join(" "));
        const withContainer = (await record(configOf({ ...k8s, containerEnabled: true }))).recording.resources.map((r) => r.name);
        assert.ok(withContainer.includes("pcp-image-load") && !withContainer.includes("pcp-image-ref"), withContainer.join(" "));
    });

    it("container only: image build, load and container; no VM, key, bridge or cluster", async () => {
        const { recording, outputs } = await record(configOf({ containerEnabled: true }));
        const names = recording.resources.map((r) => r.name).sort();
        assert.deepEqual(names.filter((n) => !n.startsWith("pcp-image")), ["state", "state-dir"]);
        assert.ok(names.includes("pcp-image-container"));
        assert.ok(recording.dependencyNames("pcp-image-container").includes("pcp-image-load-state"));
        assert.deepEqual(Object.keys(outputs).sort(), ["pmcdEndpoints", "pmproxyUrls", "stateDir", "summary", "targets"]);
        assert.deepEqual(outputs.pmcdEndpoints, { container: `127.0.0.1:${constants.hostForwards.pmcd}` });
        const container = recording.byName("pcp-image-container").inputs as { user: string; ports: Array<{ internal: number; external: number; ip: string }> };
        assert.equal(container.user, String(constants.container.uid));
        assert.deepEqual(container.ports.map((p) => p.internal).sort(), [constants.ports.pmcd, constants.ports.pmproxy]);
        assert.ok(container.ports.every((p) => p.ip === "127.0.0.1"));
    });

    it("everything with two TAP VMs: one bridge, two TAP devices, each VM waits for its own", async () => {
        const cfg = configOf({
            containerEnabled: true,
            containerPortOffset: 1000,
            bridgeEnabled: true,
            vms: ["base", "eval:tap", "grafana:tap", "bpf"],
            kubernetesEnabled: true,
            kubeContext: "kind-pcp",
        });
        const { recording, outputs } = await record(cfg);
        assert.deepEqual(
            recording.resources.filter((r) => r.name.startsWith("network-")).map((r) => r.name).sort(),
            ["network-bridge", "network-pcptap1", "network-pcptap2"],
        );
        assert.ok(recording.dependencyNames("vm-eval-process").includes("network-pcptap1"));
        assert.ok(!recording.dependencyNames("vm-eval-process").includes("network-pcptap2"));
        assert.ok(recording.dependencyNames("vm-grafana-process").includes("network-pcptap2"));
        assert.ok(!recording.dependencyNames("vm-base-process").some((n) => n.startsWith("network")));
        const targets = outputs.targets as Record<string, { pmcd: { host: string } }>;
        assert.equal(targets.eval!.pmcd.host, cfg.vms[1]!.tap!.address);
        assert.equal(targets.grafana!.pmcd.host, cfg.vms[2]!.tap!.address);
        assert.notEqual(cfg.vms[1]!.tap!.mac, cfg.vms[2]!.tap!.mac);
        assert.ok(recording.has("pcp-daemonset-daemonset"));
    });

    it("Kubernetes without the container still builds and loads the image, but runs no container", async () => {
        const { recording, outputs } = await record(configOf({ kubernetesEnabled: true, kubeContext: "minikube" }));
        assert.ok(recording.has("pcp-image-load"));
        assert.ok(!recording.has("pcp-image-container"));
        assert.deepEqual(outputs.pmproxyUrls, {});
        assert.ok(outputs.kubernetes);
    });

    it("a user-supplied SSH key replaces the generated one", async () => {
        const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUserKey me@host";
        const { recording } = await record(configOf({ vms: ["eval"], sshPublicKey: key }));
        assert.ok(!recording.has("ssh-key"));
        assert.match(String(recording.byName("vm-eval-runner-build").inputs.create), /AAAAC3NzaC1lZDI1NTE5AAAAIUserKey/);
    });

    it("host commands run on local.Command by default and on the dynamic HostCommand when asked", async () => {
        const everything = { containerEnabled: true, vms: ["eval"], kubernetesEnabled: true, kubeContext: "minikube" };
        const commandTypes = (r: Recording) => [...new Set(r.resources.filter((x) => /Command$/.test(x.type)).map((x) => x.type))];
        const byDefault = await record(configOf(everything));
        assert.deepEqual(commandTypes(byDefault.recording), ["command:local:Command"]);
        const dynamic = await record(configOf({ ...everything, hostCommands: "dynamic" }));
        assert.deepEqual(commandTypes(dynamic.recording), ["pcp-eval:index:HostCommand"]);
        // Same resources and edges either way, but for the HostState that gives a local.Command its refresh
        // (the dynamic HostCommand reads the host itself): it stands between a command and its users.
        assert.ok(byDefault.recording.has("pcp-image-load-state") && !dynamic.recording.has("pcp-image-load-state"));
        const isState = (r: Recording, n: string) => r.resources.some((x) => x.name === n && x.type.endsWith(":HostState"));
        const shape = (r: Recording) =>
            r.resources
                .filter((x) => !isState(r, x.name))
                .map((x) => `${x.name}<-${[...new Set(r.dependencyNames(x.name).map((d) => (isState(r, d) ? d.replace(/-state$/, "") : d)))].sort().join(",")}`)
                .sort();
        assert.deepEqual(shape(dynamic.recording), shape(byDefault.recording));
    });

    it("nothing enabled: no resources and only empty endpoint maps", async () => {
        const { recording, outputs } = await record(configOf({}));
        assert.deepEqual(recording.resources.map((r) => r.name), []);
        assert.deepEqual(outputs.pmproxyUrls, {});
        assert.equal(outputs.grafanaUrl, undefined);
    });
});
