/**
 * The rendered manifests: Kubernetes OpenAPI schema validation (kubernetes-models,
 * whose validators are compiled from the Kubernetes OpenAPI spec), security
 * checks, consistency with nix/constants.json, argument errors, the YAML dump
 * and the render:manifests command.
 */
import { strict as assert } from "node:assert";
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import * as YAML from "yaml";
import { DaemonSet } from "kubernetes-models/apps/v1/DaemonSet";
import { Namespace } from "kubernetes-models/v1/Namespace";
import type { IContainer } from "kubernetes-models/v1/Container";
import type { IPodSpec } from "kubernetes-models/v1/PodSpec";
import type { IToleration } from "kubernetes-models/v1/Toleration";
import { constants } from "./constants";
import {
    defaultManifestsDir,
    dumpManifests,
    labelKeys,
    ManifestError,
    pmcdEndpoint,
    renderManifests,
    type IDaemonSet,
    type INamespace,
    type RenderArgs,
    type RenderedManifests,
} from "./k8sManifests";

const execFileP = promisify(execFile);
const repoRoot = path.resolve(__dirname, "..");

const baseArgs: RenderArgs = { image: "pcp-eval:0123abcd", instance: "pe7-test" };

function render(extra: Partial<RenderArgs> = {}): RenderedManifests {
    return renderManifests({ ...baseArgs, ...extra });
}

function clone<T>(value: T): T {
    return structuredClone(value);
}

function podSpec(ds: IDaemonSet): IPodSpec {
    const spec = ds.spec?.template.spec;
    assert.ok(spec, "DaemonSet has spec.template.spec");
    return spec;
}

function allContainers(ds: IDaemonSet): IContainer[] {
    const spec = podSpec(ds);
    return [...(spec.initContainers ?? []), ...spec.containers];
}

// ---------------------------------------------------------------------------
// Schema validation

interface SchemaError {
    instancePath: string;
    message?: string;
}

/** Errors the OpenAPI-derived validator reports for `obj` (empty when valid). */
function schemaErrors(kind: "Namespace" | "DaemonSet", obj: unknown): SchemaError[] {
    try {
        if (kind === "Namespace") new Namespace(obj as INamespace).validate();
        else new DaemonSet(obj as IDaemonSet).validate();
        return [];
    } catch (err) {
        const errors = (err as { errors?: SchemaError[] }).errors;
        if (!Array.isArray(errors)) throw err;
        return errors;
    }
}

function pointer(keys: string[]): string {
    return keys.map((k) => "/" + k.replace(/~/g, "~0").replace(/\//g, "~1")).join("");
}

function setAt(root: unknown, keys: string[], value: unknown): void {
    let node = root as Record<string, unknown>;
    for (const k of keys.slice(0, -1)) node = node[k] as Record<string, unknown>;
    node[keys[keys.length - 1]] = value;
}

/**
 * Fields the schema does not know. The Kubernetes OpenAPI schemas do not
 * forbid unknown properties (the API server's strict field validation does),
 * so a misspelt field would pass plain validation. Every object key is probed:
 * replaced by a value of a wrong type, a field the schema knows makes the
 * validator complain at that path; an unknown one does not.
 */
function unknownFields(kind: "Namespace" | "DaemonSet", obj: unknown): string[] {
    const unknown: string[] = [];
    const walk = (node: unknown, keys: string[]): void => {
        if (Array.isArray(node)) {
            node.forEach((item, i) => walk(item, [...keys, String(i)]));
            return;
        }
        if (typeof node !== "object" || node === null) return;
        for (const [key, child] of Object.entries(node)) {
            const at = [...keys, key];
            const p = pointer(at);
            const known = [true, "not-a-valid-value"].some((sentinel) => {
                const probe = clone(obj);
                setAt(probe, at, sentinel);
                return schemaErrors(kind, probe).some((e) => e.instancePath === p || e.instancePath.startsWith(p + "/"));
            });
            // Below an unknown field everything is unknown: report the field once.
            if (known) walk(child, at);
            else unknown.push(p);
        }
    };
    walk(obj, []);
    return unknown;
}

describe("schema validation (Kubernetes OpenAPI, kubernetes-models)", () => {
    const m = render();

    it("the rendered Namespace and DaemonSet validate", () => {
        assert.deepEqual(schemaErrors("Namespace", m.namespace), []);
        assert.deepEqual(schemaErrors("DaemonSet", m.daemonSet), []);
    });

    it("the validator rejects a DaemonSet with a wrongly typed or missing field", () => {
        const bad = clone(m.daemonSet);
        const pmcd = podSpec(bad).containers[0];
        (pmcd as unknown as { ports: unknown }).ports = [{ name: "pmcd", containerPort: "pmcd-port" }];
        assert.ok(schemaErrors("DaemonSet", bad).some((e) => e.instancePath.includes("/ports/0/containerPort")));
        const noSelector = clone(m.daemonSet) as unknown as { spec: Record<string, unknown> };
        delete noSelector.spec.selector;
        assert.ok(schemaErrors("DaemonSet", noSelector).length > 0);
    });

    it("every field of both objects is one the schema knows", () => {
        assert.deepEqual(unknownFields("Namespace", m.namespace), []);
        assert.deepEqual(unknownFields("DaemonSet", m.daemonSet), []);
    });

    it("a misspelt field is found", () => {
        const bad = clone(m.daemonSet) as unknown as { spec: { template: { spec: Record<string, unknown> } } };
        bad.spec.template.spec.tolerration = [{ operator: "Exists" }];
        bad.spec.template.spec.containers = [
            { ...(bad.spec.template.spec.containers as object[])[0], readinesProbe: { tcpSocket: { port: "pmcd" } } },
        ];
        assert.deepEqual(unknownFields("DaemonSet", bad).sort(), [
            "/spec/template/spec/containers/0/readinesProbe",
            "/spec/template/spec/tolerration",
        ]);
    });
});

// ---------------------------------------------------------------------------
// Security checks: each returns the violations, [] when the object complies.

/** Host paths the DaemonSet may mount: what the linux PMDA reads for host metrics. */
const allowedHostPaths = ["/proc", "/sys", "/run/udev"];
/** Capabilities a container may add: none (non-root, everything dropped). */
const allowedCapabilities: string[] = [];

function hostMountViolations(ds: IDaemonSet): string[] {
    const out: string[] = [];
    const spec = podSpec(ds);
    const hostVolumes = new Map<string, string>();
    for (const v of spec.volumes ?? []) {
        if (v.hostPath !== undefined) {
            hostVolumes.set(v.name, v.hostPath.path);
            if (!allowedHostPaths.includes(v.hostPath.path)) out.push(`volume ${v.name}: host path ${v.hostPath.path} not allowed`);
        }
    }
    for (const c of allContainers(ds)) {
        for (const vm of c.volumeMounts ?? []) {
            const host = hostVolumes.get(vm.name);
            if (host === undefined) continue;
            if (vm.readOnly !== true) out.push(`${c.name}: host path ${host} mounted writable at ${vm.mountPath}`);
            if (vm.mountPropagation === "Bidirectional") out.push(`${c.name}: ${host} mounted with Bidirectional propagation`);
        }
    }
    return out;
}

/** Kubernetes quantity to a number (cores or bytes). */
function quantity(q: string | number | undefined): number {
    if (q === undefined) return NaN;
    if (typeof q === "number") return q;
    const m = /^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(q);
    if (!m) return NaN;
    const factor: Record<string, number> = {
        m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40,
    };
    return Number(m[1]) * (m[2] === undefined ? 1 : factor[m[2]]);
}

function resourceViolations(ds: IDaemonSet): string[] {
    const out: string[] = [];
    for (const c of allContainers(ds)) {
        for (const r of ["cpu", "memory"]) {
            const req = quantity(c.resources?.requests?.[r]);
            const lim = quantity(c.resources?.limits?.[r]);
            if (!(req > 0)) out.push(`${c.name}: no ${r} request`);
            if (!(lim > 0)) out.push(`${c.name}: no ${r} limit`);
            if (req > lim) out.push(`${c.name}: ${r} request above its limit`);
        }
    }
    return out;
}

function capabilityViolations(ds: IDaemonSet): string[] {
    const out: string[] = [];
    const pod = podSpec(ds).securityContext;
    if (pod?.runAsNonRoot !== true) out.push("pod: runAsNonRoot is not true");
    if (pod?.runAsUser === 0) out.push("pod: runs as root");
    for (const c of allContainers(ds)) {
        const sc = c.securityContext;
        if (sc?.privileged === true) out.push(`${c.name}: privileged`);
        if (sc?.allowPrivilegeEscalation !== false) out.push(`${c.name}: allowPrivilegeEscalation is not false`);
        if (sc?.runAsUser === 0) out.push(`${c.name}: runs as root`);
        if (!(sc?.capabilities?.drop ?? []).includes("ALL")) out.push(`${c.name}: does not drop ALL capabilities`);
        for (const cap of sc?.capabilities?.add ?? []) {
            if (!allowedCapabilities.includes(cap)) out.push(`${c.name}: adds capability ${cap}`);
        }
    }
    return out;
}

/** The port number a probe targets (by number or by the container's port name). */
function probePort(c: IContainer, port: number | string | undefined): number | undefined {
    if (typeof port === "number") return port;
    return c.ports?.find((p) => p.name === port)?.containerPort;
}

function probeViolations(ds: IDaemonSet): string[] {
    const out: string[] = [];
    const want: Record<string, number> = { pmcd: constants.ports.pmcd, pmproxy: constants.ports.pmproxy };
    for (const c of podSpec(ds).containers) {
        for (const kind of ["readinessProbe", "livenessProbe"] as const) {
            const probe = c[kind];
            if (probe === undefined) {
                out.push(`${c.name}: no ${kind}`);
                continue;
            }
            const port = probePort(c, probe.tcpSocket?.port);
            if (port === undefined) out.push(`${c.name}: ${kind} is not a tcpSocket probe on a declared port`);
            else if (want[c.name] !== undefined && port !== want[c.name]) {
                out.push(`${c.name}: ${kind} probes port ${port}, not ${want[c.name]}`);
            }
        }
    }
    return out;
}

interface Taint {
    key: string;
    value?: string;
    effect: "NoSchedule" | "PreferNoSchedule" | "NoExecute";
}

/** Kubernetes' toleration matching (k8s.io/api core/v1 Toleration.ToleratesTaint). */
function tolerates(t: IToleration, taint: Taint): boolean {
    // An empty effect or key in a toleration matches every effect or key.
    if (t.effect !== undefined && (t.effect as string) !== "" && t.effect !== taint.effect) return false;
    if (t.key !== undefined && t.key !== "" && t.key !== taint.key) return false;
    if (t.operator === "Exists") return true;
    return (t.operator === undefined || t.operator === "Equal") && (t.value ?? "") === (taint.value ?? "");
}

const controlPlaneTaints: Taint[] = [
    { key: "node-role.kubernetes.io/control-plane", effect: "NoSchedule" },
    { key: "node-role.kubernetes.io/master", effect: "NoSchedule" },
];

function untoleratedTaints(ds: IDaemonSet, taints: Taint[]): Taint[] {
    const tolerations = podSpec(ds).tolerations ?? [];
    return taints.filter((taint) => !tolerations.some((t) => tolerates(t, taint)));
}

describe("security checks", () => {
    const m = render();

    it("host namespaces: hostNetwork and hostPID, nothing else of the host", () => {
        const spec = podSpec(m.daemonSet);
        assert.equal(spec.hostNetwork, true);
        assert.equal(spec.hostPID, true);
        assert.notEqual(spec.hostIPC, true);
        assert.equal(spec.automountServiceAccountToken, false);
    });

    it("host mounts: only /proc, /sys and /run/udev, all read-only", () => {
        assert.deepEqual(hostMountViolations(m.daemonSet), []);
        const hostPaths = (podSpec(m.daemonSet).volumes ?? []).map((v) => v.hostPath?.path).filter((p) => p !== undefined);
        assert.deepEqual([...hostPaths].sort(), [...allowedHostPaths].sort());

        const writable = clone(m.daemonSet);
        podSpec(writable).containers[0].volumeMounts!.find((vm) => vm.name === "host-proc")!.readOnly = false;
        assert.equal(hostMountViolations(writable).length, 1);
        const extra = clone(m.daemonSet);
        podSpec(extra).volumes!.push({ name: "root", hostPath: { path: "/" } });
        podSpec(extra).containers[1].volumeMounts = [{ name: "root", mountPath: "/host", readOnly: true }];
        assert.deepEqual(hostMountViolations(extra), ["volume root: host path / not allowed"]);
    });

    it("hostUdev false (a node without udev): no /run/udev volume or mount is left; the other host mounts stay", () => {
        const noUdev = render({ hostUdev: false }).daemonSet;
        const hostPaths = (podSpec(noUdev).volumes ?? []).map((v) => v.hostPath?.path).filter((p) => p !== undefined);
        assert.deepEqual([...hostPaths].sort(), allowedHostPaths.filter((p) => p !== "/run/udev").sort());
        const volumes = new Set((podSpec(noUdev).volumes ?? []).map((v) => v.name));
        for (const c of podSpec(noUdev).containers) {
            for (const mount of c.volumeMounts ?? []) assert.ok(volumes.has(mount.name), `${c.name} mounts ${mount.name}, which has no volume`);
            assert.ok(!(c.volumeMounts ?? []).some((mnt) => mnt.mountPath === "/host/run/udev"), c.name);
        }
        assert.deepEqual(hostMountViolations(noUdev), []);
    });

    it("read-only root filesystems; the daemons write only to emptyDirs at PCP's run, log and tmp directories", () => {
        const spec = podSpec(m.daemonSet);
        const emptyDirs = new Set((spec.volumes ?? []).filter((v) => v.emptyDir !== undefined).map((v) => v.name));
        for (const c of spec.containers) {
            assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${c.name}: readOnlyRootFilesystem`);
            const writable = (c.volumeMounts ?? []).filter((vm) => vm.readOnly !== true);
            for (const vm of writable) assert.ok(emptyDirs.has(vm.name), `${c.name}: writable mount ${vm.mountPath} is not an emptyDir`);
            const paths = writable.map((vm) => vm.mountPath).sort();
            assert.deepEqual(paths, ["/run/pcp", "/tmp", "/var/lib/pcp/tmp", `/var/log/pcp/${c.name}`].sort(), `${c.name}: writable paths`);
            // Its log goes to its emptyDir (the default, pmcd.log in the working directory, is read-only now).
            const args = c.args ?? [];
            assert.equal(args[args.indexOf("-l") + 1], `/var/log/pcp/${c.name}/${c.name}.log`, `${c.name}: -l LOG`);
        }
    });

    it("hostPath volumes must exist on the node (type Directory): nothing is created on the host", () => {
        for (const v of podSpec(m.daemonSet).volumes ?? []) {
            if (v.hostPath) assert.equal(v.hostPath.type, "Directory", `volume ${v.name}`);
        }
    });

    it("the namespace says it is dedicated to this DaemonSet, since it enforces the privileged Pod Security level", () => {
        const md = m.namespace.metadata!;
        assert.equal(md.labels?.["pod-security.kubernetes.io/enforce"], "privileged");
        assert.equal(md.labels?.["pcp-eval.io/dedicated"], "true");
        assert.match(md.annotations?.["pcp-eval.io/purpose"] ?? "", /only the pcp-eval PCP DaemonSet.*privileged/);
        assert.match(md.annotations?.["pcp-eval.io/exposure"] ?? "", /pmcd and pmproxy listen on every address of each node/);
    });

    it("resources: every container has cpu and memory requests and limits, requests within limits", () => {
        assert.deepEqual(resourceViolations(m.daemonSet), []);
        const noLimit = clone(m.daemonSet);
        delete podSpec(noLimit).containers[1].resources!.limits;
        assert.deepEqual(resourceViolations(noLimit), ["pmproxy: no cpu limit", "pmproxy: no memory limit"]);
    });

    it("capabilities: not privileged, non-root, no escalation, ALL dropped, none added", () => {
        assert.deepEqual(capabilityViolations(m.daemonSet), []);
        assert.equal(podSpec(m.daemonSet).securityContext?.runAsUser, constants.container.uid);
        const added = clone(m.daemonSet);
        podSpec(added).containers[0].securityContext!.capabilities!.add = ["SYS_ADMIN"];
        podSpec(added).containers[1].securityContext!.privileged = true;
        assert.deepEqual(capabilityViolations(added), ["pmcd: adds capability SYS_ADMIN", "pmproxy: privileged"]);
    });

    it("probes: readiness and liveness on pmcd's and pmproxy's ports", () => {
        assert.deepEqual(probeViolations(m.daemonSet), []);
        const noProbe = clone(m.daemonSet);
        delete podSpec(noProbe).containers[0].livenessProbe;
        podSpec(noProbe).containers[1].readinessProbe = { tcpSocket: { port: constants.ports.pmcd } };
        assert.deepEqual(probeViolations(noProbe), [
            "pmcd: no livenessProbe",
            `pmproxy: readinessProbe probes port ${constants.ports.pmcd}, not ${constants.ports.pmproxy}`,
        ]);
    });

    it("tolerations: runs on control-plane nodes (and any other taint)", () => {
        assert.deepEqual(untoleratedTaints(m.daemonSet, controlPlaneTaints), []);
        assert.deepEqual(untoleratedTaints(m.daemonSet, [{ key: "pe7.example/custom", value: "x", effect: "NoExecute" }]), []);
        const none = clone(m.daemonSet);
        podSpec(none).tolerations = [{ key: "node-role.kubernetes.io/master", operator: "Exists", effect: "NoSchedule" }];
        assert.deepEqual(untoleratedTaints(none, controlPlaneTaints), [controlPlaneTaints[0]]);
    });
});

// ---------------------------------------------------------------------------
// What the renderer sets

describe("renderManifests", () => {
    it("defaults the namespace and DaemonSet name to nix/constants.json", () => {
        const m = render();
        assert.equal(m.namespace.metadata?.name, constants.kubernetes.namespace);
        assert.equal(m.daemonSet.metadata?.name, constants.kubernetes.daemonSetName);
        assert.equal(m.daemonSet.metadata?.namespace, constants.kubernetes.namespace);
    });

    it("sets image, namespace, name, labels and pull policy from its arguments", () => {
        const m = render({ image: "registry.local/pcp-eval:feed", namespace: "pe7-ns", name: "pe7-ds", instance: "ci", managedBy: "kubectl", imagePullPolicy: "Never" });
        assert.equal(m.namespace.metadata?.name, "pe7-ns");
        assert.equal(m.daemonSet.metadata?.namespace, "pe7-ns");
        assert.equal(m.daemonSet.metadata?.name, "pe7-ds");
        for (const c of allContainers(m.daemonSet)) {
            assert.equal(c.image, "registry.local/pcp-eval:feed");
            assert.equal(c.imagePullPolicy, "Never");
        }
        const want = {
            [labelKeys.name]: "pcp",
            [labelKeys.instance]: "ci",
            [labelKeys.component]: "metrics-collector",
            [labelKeys.partOf]: "pcp-eval",
            [labelKeys.managedBy]: "kubectl",
        };
        for (const labels of [m.daemonSet.metadata?.labels, m.daemonSet.spec?.template.metadata?.labels]) {
            for (const [k, v] of Object.entries(want)) assert.equal(labels?.[k], v, k);
        }
        const nsLabels = m.namespace.metadata?.labels ?? {};
        assert.equal(nsLabels[labelKeys.instance], "ci");
        assert.equal(nsLabels[labelKeys.managedBy], "kubectl");
        assert.equal(nsLabels["pod-security.kubernetes.io/enforce"], "privileged");
    });

    it("the selector matches the pod template's labels and pins the instance", () => {
        const m = render();
        const selector = m.daemonSet.spec?.selector.matchLabels ?? {};
        const podLabels = m.daemonSet.spec?.template.metadata?.labels ?? {};
        assert.deepEqual(Object.keys(selector).sort(), [labelKeys.instance, labelKeys.name].sort());
        for (const [k, v] of Object.entries(selector)) assert.equal(podLabels[k], v);
    });

    it("ports, daemon arguments and PMCD_PORT come from nix/constants.json", () => {
        const m = render();
        const [pmcd, pmproxy] = podSpec(m.daemonSet).containers;
        assert.equal(pmcd.name, "pmcd");
        assert.equal(pmproxy.name, "pmproxy");
        assert.deepEqual(pmcd.ports, [{ name: "pmcd", containerPort: constants.ports.pmcd, hostPort: constants.ports.pmcd, protocol: "TCP" }]);
        assert.deepEqual(pmproxy.ports, [{ name: "pmproxy", containerPort: constants.ports.pmproxy, hostPort: constants.ports.pmproxy, protocol: "TCP" }]);
        assert.deepEqual([pmcd.command, pmcd.args], [["pmcd"], ["-f", "-l", "/var/log/pcp/pmcd/pmcd.log", "-p", String(constants.ports.pmcd)]]);
        assert.deepEqual([pmproxy.command, pmproxy.args], [["pmproxy"], ["-f", "-l", "/var/log/pcp/pmproxy/pmproxy.log", "-p", String(constants.ports.pmproxy)]]);
        assert.deepEqual(pmproxy.env, [{ name: "PMCD_PORT", value: String(constants.ports.pmcd) }]);
    });

    it("the templates in manifests/ restate no port number", () => {
        for (const file of ["namespace.yaml", "daemonset.yaml"]) {
            const text = fs.readFileSync(path.join(defaultManifestsDir, file), "utf8");
            for (const [name, port] of Object.entries(constants.ports)) {
                if (port < 1024) continue; // small numbers (ssh) also occur as other values
                assert.ok(!text.includes(String(port)), `${file} restates ports.${name}`);
            }
        }
    });

    it("the linux PMDA reads the host mounts: LINUX_STATSPATH/PROC_STATSPATH prefix the mounted paths", () => {
        const pmcd = podSpec(render().daemonSet).containers[0];
        const env = Object.fromEntries((pmcd.env ?? []).map((e) => [e.name, e.value]));
        assert.equal(env.LINUX_STATSPATH, env.PROC_STATSPATH);
        const mounts = (pmcd.volumeMounts ?? []).map((v) => v.mountPath);
        for (const host of allowedHostPaths) assert.ok(mounts.includes(`${env.LINUX_STATSPATH}${host}`), host);
    });

    it("is pure: two renders are equal and do not share objects", () => {
        const a = render();
        const b = render();
        assert.deepEqual(a, b);
        podSpec(a.daemonSet).containers[0].image = "changed";
        assert.equal(podSpec(b.daemonSet).containers[0].image, baseArgs.image);
    });

    it("bad arguments: a clear error naming the field", () => {
        const cases: Array<[Partial<RenderArgs>, RegExp]> = [
            [{ image: "" }, /^image "" is not an image reference/],
            [{ image: "pcp eval:1" }, /^image /],
            [{ namespace: "PCP_ns" }, /^namespace "PCP_ns" is not a valid Kubernetes name/],
            [{ namespace: "a".repeat(64) }, /^namespace /],
            [{ name: "-pcp" }, /^name "-pcp"/],
            [{ instance: "my stack" }, /^instance "my stack" is not a valid label value/],
            [{ managedBy: "" }, /^managedBy /],
            [{ imagePullPolicy: "Sometimes" as RenderArgs["imagePullPolicy"] }, /^imagePullPolicy "Sometimes" must be one of/],
            [{ manifestsDir: "/nonexistent/pe7" }, /cannot read \/nonexistent\/pe7\/namespace\.yaml/],
        ];
        for (const [extra, message] of cases) {
            assert.throws(() => render(extra), (err: unknown) => err instanceof ManifestError && message.test(err.message), JSON.stringify(extra));
        }
    });

    it("bad templates: ports restated, a container missing, the wrong kind", (t) => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe7-manifests-"));
        t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
        const nsText = fs.readFileSync(path.join(defaultManifestsDir, "namespace.yaml"), "utf8");
        const dsDoc = YAML.parse(fs.readFileSync(path.join(defaultManifestsDir, "daemonset.yaml"), "utf8")) as IDaemonSet;
        const write = (ds: unknown, ns: string = nsText): void => {
            fs.writeFileSync(path.join(dir, "namespace.yaml"), ns);
            fs.writeFileSync(path.join(dir, "daemonset.yaml"), YAML.stringify(ds));
        };
        const expectError = (message: RegExp): void => {
            assert.throws(() => render({ manifestsDir: dir }), (err: unknown) => err instanceof ManifestError && message.test(err.message));
        };

        write(dsDoc);
        assert.doesNotThrow(() => render({ manifestsDir: dir }));

        const withPorts = clone(dsDoc);
        podSpec(withPorts).containers[0].ports = [{ containerPort: 1 }];
        write(withPorts);
        expectError(/container "pmcd" sets ports; remove them, the renderer sets ports from nix\/constants\.json/);

        const withPortArg = clone(dsDoc);
        podSpec(withPortArg).containers[1].args = ["-f", "-p", "1"];
        write(withPortArg);
        expectError(/container "pmproxy" passes a port argument/);

        const noProxy = clone(dsDoc);
        podSpec(noProxy).containers.splice(1, 1);
        write(noProxy);
        expectError(/must define a container named "pmproxy"/);

        write(dsDoc, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n");
        expectError(/namespace\.yaml must hold one v1 Namespace/);

        write(dsDoc, nsText + "---\n" + nsText);
        expectError(/must hold exactly one YAML document, found 2/);
    });

    it("pmcdEndpoint: node address and pmcd's port, IPv6 in brackets", () => {
        assert.equal(pmcdEndpoint("192.0.2.7"), `192.0.2.7:${constants.ports.pmcd}`);
        assert.equal(pmcdEndpoint("2001:db8::7"), `[2001:db8::7]:${constants.ports.pmcd}`);
    });
});

// ---------------------------------------------------------------------------
// Dump and the render:manifests command

describe("dumpManifests", () => {
    it("each file parses back to the rendered object; all.yaml is the namespace then the DaemonSet", () => {
        const m = render();
        const d = dumpManifests(m);
        assert.deepEqual(YAML.parse(d["namespace.yaml"]), m.namespace);
        assert.deepEqual(YAML.parse(d["daemonset.yaml"]), m.daemonSet);
        const docs = YAML.parseAllDocuments(d["all.yaml"]).map((doc) => doc.toJS() as unknown);
        assert.deepEqual(docs, [m.namespace, m.daemonSet]);
    });
});

describe("npm run render:manifests", () => {
    const script = path.join(repoRoot, "scripts", "render-manifests.ts");
    const run = (args: string[]) =>
        execFileP(process.execPath, ["--import", "tsx", script, ...args], { cwd: repoRoot, encoding: "utf8" });

    it("writes namespace.yaml, daemonset.yaml and all.yaml that validate", async (t) => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe7-render-"));
        t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
        const out = path.join(dir, "out");
        const { stdout } = await run(["--out", out, "--image", "pcp-eval:cafe", "--namespace", "pe7-render"]);
        const result = JSON.parse(stdout) as { out: string; files: string[]; namespace: string; daemonSet: string };
        assert.equal(result.out, out);
        assert.equal(result.namespace, "pe7-render");
        assert.equal(result.daemonSet, constants.kubernetes.daemonSetName);
        assert.deepEqual(fs.readdirSync(out).sort(), ["all.yaml", "daemonset.yaml", "namespace.yaml"]);
        const [ns, ds] = YAML.parseAllDocuments(fs.readFileSync(path.join(out, "all.yaml"), "utf8")).map((d) => d.toJS() as unknown);
        assert.deepEqual(schemaErrors("Namespace", ns), []);
        assert.deepEqual(schemaErrors("DaemonSet", ds), []);
        assert.equal((ds as IDaemonSet).metadata?.namespace, "pe7-render");
        assert.equal(podSpec(ds as IDaemonSet).containers[0].image, "pcp-eval:cafe");
        assert.equal((ds as IDaemonSet).metadata?.labels?.[labelKeys.managedBy], "kubectl");
        assert.deepEqual(YAML.parse(fs.readFileSync(path.join(out, "daemonset.yaml"), "utf8")), ds);
    });

    it("bad input: exit status 2, the field named on stderr, nothing written", async (t) => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe7-render-"));
        t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
        const out = path.join(dir, "out");
        for (const [args, message] of [
            [["--namespace", "x"], /--out is required/],
            [["--out", out, "--namespace", "Bad_NS"], /namespace "Bad_NS" is not a valid Kubernetes name/],
            [["--out", out, "--colour"], /Unknown option '--colour'/],
        ] as Array<[string[], RegExp]>) {
            await assert.rejects(run(args), (err: { code?: number; stderr?: string; stdout?: string }) => {
                assert.equal(err.code, 2);
                assert.match(err.stderr ?? "", message);
                assert.equal(err.stdout, "");
                return true;
            });
        }
        assert.equal(fs.existsSync(out), false);
    });
});
