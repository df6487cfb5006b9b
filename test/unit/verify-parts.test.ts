/**
 * The pure parts of verify: reading the `targets` output against the contract,
 * parity arithmetic, the exposition parser, argument parsing, the summary
 * table, and the runner's retry rules.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { consolePorts, constants, forwardedPorts } from "../../components/constants";
import { buildChecks } from "../../verify/checks";
import { parsePhases, parseTimeouts, UsageError } from "../../verify/cli";
import { OutputsError, parseStackOutputs, unwrapOutputMap } from "../../verify/outputs";
import { compareWithSamples, percent, relativeDeviation } from "../../verify/parity";
import { bytesPerSpaceUnit } from "../../verify/pmapi";
import { parseProbe } from "../../verify/pmie";
import { parseExposition } from "../../verify/prom";
import { combineStatus, formatSummaryTable, summarisePhase, type TargetReport } from "../../verify/report";
import { runCheck } from "../../verify/runner";
import { shellQuote, sshArgv } from "../../verify/remote";
import type { CheckResult } from "../../verify/types";
import { fail, pass } from "../../verify/types";

const evalPorts = forwardedPorts("eval");
const evalConsoles = consolePorts("eval");
const loopback = "127.0.0.1";
const containerPmcd = constants.ports.pmcd;
const containerPmproxy = constants.ports.pmproxy;

/** The contract's example outputs, with every number derived from nix/constants.json. */
const contractExample = {
    grafanaUrl: `http://${loopback}:${constants.hostForwards.grafana}`,
    prometheusUrl: `http://${loopback}:${constants.hostForwards.prometheus}`,
    pmproxyUrls: { container: `http://${loopback}:${containerPmproxy}`, eval: `http://${loopback}:${evalPorts.pmproxy}` },
    pmcdEndpoints: { eval: `${loopback}:${evalPorts.pmcd}` },
    summary: "container + eval",
    targets: {
        container: {
            kind: "container",
            pmcd: { host: loopback, port: containerPmcd },
            pmproxyUrl: `http://${loopback}:${containerPmproxy}`,
            features: { linuxPmda: true, bpf: false, pmieTest: false, nodeExporter: false },
        },
        eval: {
            kind: "vm",
            variant: "eval",
            networking: "user",
            pmcd: { host: loopback, port: evalPorts.pmcd },
            pmproxyUrl: `http://${loopback}:${evalPorts.pmproxy}/`,
            nodeExporterUrl: `http://${loopback}:${evalPorts.nodeExporter}`,
            consoles: { host: loopback, serial: evalConsoles.serial, virtio: evalConsoles.virtio },
            ssh: { host: loopback, port: evalPorts.ssh, user: "root", identityFile: "/state/dev/ssh/id_ed25519" },
            features: { linuxPmda: true, bpf: false, pmieTest: true, nodeExporter: true },
        },
    },
};

test("outputs: the contract's shape parses, in the CLI's and the Automation API's JSON", () => {
    const plain = parseStackOutputs(contractExample, "test");
    assert.deepEqual(Object.keys(plain.targets), ["container", "eval"]);
    assert.equal(plain.targets.eval.pmproxyUrl, `http://${loopback}:${evalPorts.pmproxy}`, "a trailing slash is dropped");
    assert.deepEqual(plain.targets.eval.ssh, contractExample.targets.eval.ssh);
    assert.equal(plain.targets.container.consoles, undefined, "absent parts stay absent");
    assert.equal(plain.grafanaUrl, contractExample.grafanaUrl);
    const wrapped = Object.fromEntries(Object.entries(contractExample).map(([k, v]) => [k, { value: v, secret: false }]));
    assert.deepEqual(parseStackOutputs(wrapped, "test"), plain);
    assert.deepEqual(unwrapOutputMap({ a: { value: 1 } }), { a: 1 });
    assert.deepEqual(unwrapOutputMap({ a: { value: 1, other: 2 } }), { a: { value: 1, other: 2 } }, "only the exact wrapper shape is unwrapped");
});

test("outputs: grafanaDashboards (URLs) and the secret grafanaAdminPassword are read; a bad dashboard URL is named", () => {
    const grafanaUrl = contractExample.grafanaUrl;
    const withGrafana = { ...contractExample, grafanaDashboards: { "pcp-eval-pcp-vs-node": `${grafanaUrl}/d/pcp-eval-pcp-vs-node` }, grafanaAdminPassword: "s3cret-hex" };
    const parsed = parseStackOutputs({ ...Object.fromEntries(Object.entries(withGrafana).map(([k, v]) => [k, { value: v, secret: k === "grafanaAdminPassword" }])) }, "test");
    assert.equal(parsed.grafanaAdminPassword, "s3cret-hex");
    assert.deepEqual(parsed.grafanaDashboards, withGrafana.grafanaDashboards);
    assert.throws(
        () => parseStackOutputs({ ...contractExample, grafanaDashboards: { x: "nope" } }, "test"),
        /outputs\.grafanaDashboards\.x: "nope" is not an http\(s\) URL/,
    );
});

test("outputs and ssh: identityFile is optional (a user-supplied key); ssh then offers the user's own keys", () => {
    const own = structuredClone(contractExample);
    const { identityFile: _dropped, ...sshWithoutKey } = own.targets.eval.ssh;
    const parsed = parseStackOutputs({ ...own, targets: { eval: { ...own.targets.eval, ssh: sshWithoutKey } } }, "test");
    assert.deepEqual(parsed.targets.eval.ssh, { host: loopback, port: evalPorts.ssh, user: "root" });
    const withKey = sshArgv(contractExample.targets.eval.ssh, 5000, [constants.pmie.alertsLog, "it's"]);
    assert.deepEqual(withKey.slice(0, 4), ["-i", "/state/dev/ssh/id_ed25519", "-o", "IdentitiesOnly=yes"]);
    assert.ok(withKey.includes("BatchMode=yes") && withKey.includes("ConnectTimeout=5"));
    assert.equal(withKey.at(-2), `root@${loopback}`);
    assert.equal(withKey.at(-1), `sh -s -- '${constants.pmie.alertsLog}' 'it'\\''s'`);
    const withoutKey = sshArgv(sshWithoutKey, 1500, []);
    assert.equal(withoutKey.includes("-i"), false);
    assert.equal(withoutKey.includes("IdentitiesOnly=yes"), false);
    assert.ok(withoutKey.includes("ConnectTimeout=2"));
});

test("outputs: the DaemonSet's per-node endpoints become daemonset-<node> targets", () => {
    const withK8s = {
        ...contractExample,
        kubernetes: {
            namespace: constants.kubernetes.namespace,
            daemonSet: constants.kubernetes.daemonSetName,
            context: "kind-pe8",
            pmcdEndpoints: { "node-a": `192.0.2.10:${containerPmcd}` },
            pmproxyUrls: { "node-a": `http://192.0.2.10:${containerPmproxy}` },
        },
    };
    const parsed = parseStackOutputs(withK8s, "test");
    assert.deepEqual(Object.keys(parsed.targets), ["container", "eval", "daemonset-node-a"]);
    assert.deepEqual(parsed.targets["daemonset-node-a"], {
        kind: "daemonset",
        pmcd: { host: "192.0.2.10", port: containerPmcd },
        pmproxyUrl: `http://192.0.2.10:${containerPmproxy}`,
        features: { linuxPmda: true, bpf: false, pmieTest: false, nodeExporter: false },
    });
    const broken = { ...withK8s, kubernetes: { ...withK8s.kubernetes, pmcdEndpoints: { "node-a": "192.0.2.10" }, pmproxyUrls: {} } };
    assert.throws(() => parseStackOutputs(broken, "test"), /outputs\.kubernetes\.pmcdEndpoints\.node-a: expected "host:port", got "192\.0\.2\.10"/);
    const noUrl = { ...withK8s, kubernetes: { ...withK8s.kubernetes, pmproxyUrls: {} } };
    assert.throws(() => parseStackOutputs(noUrl, "test"), /outputs\.kubernetes\.pmproxyUrls\.node-a: missing/);
});

test("outputs: every bad field is reported with its path", () => {
    const bad = structuredClone(contractExample) as unknown as { targets: Record<string, Record<string, unknown>> };
    bad.targets.eval.kind = "pod";
    bad.targets.eval.pmcd = { host: "", port: 70000 };
    bad.targets.eval.nodeExporterUrl = "tcp://x";
    bad.targets.eval.features = { linuxPmda: "yes", bpf: false, pmieTest: true, nodeExporter: true };
    delete bad.targets.container.pmproxyUrl;
    let err: unknown;
    try {
        parseStackOutputs(bad, "file.json");
    } catch (e) {
        err = e;
    }
    assert.ok(err instanceof OutputsError);
    assert.deepEqual(err.problems, [
        "outputs.targets.container.pmproxyUrl: missing (expected a string)",
        'outputs.targets.eval.kind: expected one of vm, container, daemonset, got "pod"',
        'outputs.targets.eval.pmcd.host: expected a non-empty string, got ""',
        "outputs.targets.eval.pmcd.port: expected a TCP port number (1-65535), got 70000",
        'outputs.targets.eval.nodeExporterUrl: "tcp://x" is not an http(s) URL',
        'outputs.targets.eval.features.linuxPmda: expected true or false, got "yes"',
    ]);
    assert.match(err.message, /^stack outputs from file\.json are not usable:/);
    assert.throws(() => parseStackOutputs({ summary: "x" }, "s"), /outputs\.targets: missing; the stack has no `targets` output \(run `pulumi up` first/);
    assert.throws(() => parseStackOutputs([], "s"), /expected a JSON object of stack outputs/);
});

test("parity: deviation is relative to PCP, a value read between two PCP samples agrees", () => {
    assert.equal(relativeDeviation(100, 150), 0.5);
    assert.equal(relativeDeviation(0, 0), 0);
    assert.equal(relativeDeviation(0, 0.01), Infinity);
    const tol = constants.metrics.parityTolerance;
    assert.equal(compareWithSamples([2.0], 2.1, tol).ok, true, "5% off is within 10%");
    assert.equal(compareWithSamples([2.0], 2.5, tol).ok, false, "25% off is not");
    const between = compareWithSamples([0.0, 0.5], 0.25, tol);
    assert.deepEqual(between, { ok: true, deviation: 0.5, bracketed: true }, "a kernel update between the two PCP reads");
    assert.equal(compareWithSamples([0, 0], 0.01, tol).ok, false);
    assert.equal(percent(0.5), "50%");
    assert.equal(percent(0.053), "5.3%");
    assert.equal(percent(Infinity), "\u221e%");
    assert.throws(() => compareWithSamples([], 1, tol), /no PCP samples/);
});

test("units: PCP space units convert to bytes (mem.physmem is in Kbyte)", () => {
    assert.equal(bytesPerSpaceUnit("Kbyte"), 1024);
    assert.equal(bytesPerSpaceUnit("byte"), 1);
    assert.equal(bytesPerSpaceUnit("Mbyte"), 1024 * 1024);
    assert.equal(bytesPerSpaceUnit("count"), undefined);
});

test("exposition: unlabelled and labelled samples, comments and exponents", () => {
    const text = [
        "# HELP node_load1 1m load average.",
        "# TYPE node_load1 gauge",
        "node_load1 0.52",
        "node_load15 1.5e-01",
        'node_cpu_seconds_total{cpu="0",mode="idle"} 1234.5',
        'node_cpu_seconds_total{cpu="1",mode="idle"} 99',
        "node_memory_MemTotal_bytes 2.5325268992e+10",
        "node_load5 NaN",
    ].join("\n");
    const got = parseExposition(text, ["node_load1", "node_load5", "node_load15", "node_memory_MemTotal_bytes", "node_cpu_seconds_total", "absent"]);
    assert.equal(got.get("node_load1"), 0.52);
    assert.equal(got.get("node_load15"), 0.15);
    assert.equal(got.get("node_memory_MemTotal_bytes"), 25325268992);
    assert.equal(got.get("node_cpu_seconds_total"), 1234.5, "first series of a labelled metric");
    assert.equal(got.has("node_load5"), false, "NaN is no value");
    assert.equal(got.has("absent"), false);
});

test("pmie probe output parses; garbage is an error naming what came back", () => {
    assert.deepEqual(parseProbe("now=1700000000 alerts=3 heartbeat=1699999998\n"), { now: 1700000000, alerts: 3, heartbeat: 1699999998 });
    assert.deepEqual(parseProbe("now=1700000000 alerts=missing heartbeat=missing"), { now: 1700000000 });
    assert.throws(() => parseProbe("sh: stat: not found"), /unexpected probe output: "sh: stat: not found"/);
    assert.equal(shellQuote("it's"), `'it'\\''s'`);
});

test("cli: --timeout and --phase are validated with the fix in the message", () => {
    assert.deepEqual(parseTimeouts(["services=90", "metrics=2.5"]), { services: 90, metrics: 2.5 });
    assert.throws(() => parseTimeouts(["boot=5"]), (e: unknown) => e instanceof UsageError && /PHASE one of services, metrics, consoles, parity, pmie/.test(e.message));
    assert.throws(() => parseTimeouts(["services=0"]), /greater than 0/);
    assert.deepEqual(parsePhases(["parity,services"]), ["services", "parity"], "phases run in their fixed order");
    assert.equal(parsePhases([]), undefined);
    assert.throws(() => parsePhases(["metric"]), /--phase metric: unknown phase/);
});

test("checks: budgets come from nix/constants.json unless overridden; absent parts are SKIPs with reasons", () => {
    const outputs = parseStackOutputs(contractExample, "test");
    const t = constants.timeoutsSeconds;
    const evalChecks = buildChecks("eval", outputs.targets.eval);
    assert.equal(evalChecks.services[0].timeoutMs, t.services * 1000);
    assert.equal(evalChecks.metrics[0].timeoutMs, t.metrics * 1000);
    assert.equal(evalChecks.consoles[0].timeoutMs, t.serial * 1000);
    assert.equal(evalChecks.consoles[1].timeoutMs, t.virtio * 1000);
    assert.equal(evalChecks.pmie[1].timeoutMs, (constants.pmie.busySeconds + constants.pmie.idleSeconds + constants.pmie.heartbeatSeconds) * 1000);
    assert.equal(evalChecks.pmie[1].selfTimed, true);
    const grafana = buildChecks("g", { ...outputs.targets.eval, variant: "grafana" });
    assert.equal(grafana.services[0].timeoutMs, t.servicesGrafana * 1000);
    const overridden = buildChecks("eval", outputs.targets.eval, { timeoutsSeconds: { services: 3 } });
    assert.equal(overridden.services[0].timeoutMs, 3000);

    const container = buildChecks("container", outputs.targets.container);
    const skips = Object.values(container)
        .flat()
        .filter((c) => c.skip !== undefined)
        .map((c) => `${c.phase}/${c.name}: ${c.skip}`);
    assert.deepEqual(skips, [
        "services/grafana /api/health: no Grafana on this target (no grafanaUrl output)",
        "services/grafana datasource Prometheus: no Grafana on this target (no grafanaUrl output)",
        "services/grafana datasource PCP Vector: no Grafana on this target (no grafanaUrl output)",
        "services/grafana datasource PCP Valkey: no Grafana on this target (no grafanaUrl output)",
        "services/prometheus /-/ready: no Prometheus on this target (no prometheusUrl output)",
        "services/node_exporter /metrics: no node_exporter on this target (features.nodeExporter is false)",
        "metrics/bpf.runq.latency: not a BPF target (features.bpf is false)",
        "metrics/bpf.disk.all.latency: not a BPF target (features.bpf is false)",
        "metrics/grafana Vector query kernel.all.load: no Grafana on this target (no grafanaUrl output)",
        "consoles/serial console: no consoles in this target's outputs (only MicroVMs have them)",
        "consoles/virtio console: no consoles in this target's outputs (only MicroVMs have them)",
        "parity/load: kernel.all.load vs node_load1/5/15: no node_exporter on this target to compare with",
        "parity/memory: mem.physmem vs node_memory_MemTotal_bytes: no node_exporter on this target to compare with",
        "pmie/pmie heartbeat fresh: no pmie test workload on this target (features.pmieTest is false)",
        "pmie/pmie cpu_elevated in alerts.log: no pmie test workload on this target (features.pmieTest is false)",
    ]);
    const noLinux = buildChecks("x", { ...outputs.targets.container, features: { ...outputs.targets.container.features, linuxPmda: false } });
    assert.match(noLinux.metrics.at(-1)?.skip ?? "", /linux PMDA does not run/);
});

test("runner: a failing check is retried until it passes; without retry it gets one attempt; a throw is a FAIL", async () => {
    let n = 0;
    const flaky = await runCheck(
        "t",
        { phase: "services", name: "flaky", timeoutMs: 10_000, attempt: async () => (++n < 2 ? fail("not yet") : pass("now")) },
        { retry: true },
    );
    assert.equal(flaky.status, "PASS");
    assert.equal(flaky.attempts, 2);
    let m = 0;
    const once = await runCheck("t", { phase: "services", name: "once", timeoutMs: 10_000, attempt: async () => (++m, fail("down at 127.0.0.1:1")) }, { retry: false });
    assert.equal(once.status, "FAIL");
    assert.equal(m, 1);
    assert.equal(once.message, "down at 127.0.0.1:1", "a single attempt's message is unchanged");
    const thrown = await runCheck("t", { phase: "metrics", name: "boom", timeoutMs: 1, attempt: async () => { throw new Error("GET http://x: refused"); } }, { retry: true });
    assert.equal(thrown.status, "FAIL");
    assert.equal(thrown.message, "GET http://x: refused");
    const skipped = await runCheck("t", { phase: "pmie", name: "s", timeoutMs: 1, skip: "no ssh" }, { retry: true });
    assert.deepEqual([skipped.status, skipped.message, skipped.attempts], ["SKIP", "no ssh", 0]);
});

test("report: FAIL beats PASS beats SKIP; the table lists phases, counts and times with a total", () => {
    assert.equal(combineStatus(["PASS", "SKIP", "FAIL"]), "FAIL");
    assert.equal(combineStatus(["SKIP", "PASS"]), "PASS");
    assert.equal(combineStatus(["SKIP"]), "SKIP");
    assert.equal(combineStatus([]), "SKIP");
    const r = (phase: CheckResult["phase"], status: CheckResult["status"]): CheckResult => ({ target: "eval", phase, name: "c", status, message: "", ms: 1, attempts: 1 });
    const report: TargetReport = {
        target: "eval",
        kind: "vm",
        variant: "eval",
        status: "FAIL",
        ms: 61_500,
        phases: [summarisePhase("services", [r("services", "PASS"), r("services", "SKIP")], 12), summarisePhase("metrics", [r("metrics", "FAIL")], 61_488)],
        checks: [],
    };
    assert.equal(
        formatSummaryTable(report),
        [
            "=== eval (vm eval): FAIL ===",
            "phase     result  pass  fail  skip       time  note",
            "---------------------------------------------------",
            "services  PASS       1     0     1      12 ms",
            "metrics   FAIL       0     1     0  1 min 1 s",
            "---------------------------------------------------",
            "total     FAIL       1     1     1  1 min 2 s",
        ].join("\n"),
    );
});
