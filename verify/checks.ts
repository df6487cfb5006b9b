/**
 * The checks of each phase for one target, built from the target's outputs.
 * A part the target does not provision is a SKIP with the reason; every FAIL
 * message says what failed and where (address or URL).
 */
import { constants, isVariant, servicesTimeoutSeconds } from "../components/constants";
import { excerpt, httpGet, httpGetJson, joinUrl, tcpConnect } from "./net";
import { type GrafanaAccess, grafanaDatasourceChecks, grafanaVectorQuery } from "./grafana";
import { compareWithSamples, percent } from "./parity";
import { alertBudgetSeconds, checkAlertGrows, checkHeartbeat, defaultPmieSettings, type PmieSettings } from "./pmie";
import { bytesPerSpaceUnit, pmapiAllMetricNames, pmapiContext, pmapiDescribe, pmapiFetch } from "./pmapi";
import { scrapeNodeExporter } from "./prom";
import { type RemoteShell, sshShell } from "./remote";
import type { AttemptContext, CheckSpec } from "./runner";
import type { CheckOutcome, Target, VerifyPhase } from "./types";
import { fail, pass } from "./types";

export interface CheckSettings {
    /** Per-phase time budget overrides in seconds (the defaults come from nix/constants.json). */
    timeoutsSeconds?: Partial<Record<VerifyPhase, number>>;
    pmie?: Partial<PmieSettings>;
    /** Grafana's admin password (the stack's secret output) for the datasource checks. */
    grafana?: GrafanaAccess;
    /** How to reach a target's shell; defaults to SSH with the target's ssh info. */
    shellFor?: (name: string, target: Target) => RemoteShell | undefined;
}

const seconds = (s: number): number => Math.round(s * 1000);

function budgetMs(settings: CheckSettings, phase: VerifyPhase, fallbackSeconds: number): number {
    const override = settings.timeoutsSeconds?.[phase];
    return seconds(override ?? fallbackSeconds);
}

function servicesSeconds(target: Target): number {
    if (target.variant !== undefined && isVariant(target.variant)) return servicesTimeoutSeconds(target.variant);
    return target.grafanaUrl !== undefined ? constants.timeoutsSeconds.servicesGrafana : constants.timeoutsSeconds.services;
}

// ---------------------------------------------------------------- services

function pmcdTcp(target: Target, timeoutMs: number): CheckSpec {
    const { host, port } = target.pmcd;
    return {
        phase: "services",
        name: `pmcd tcp ${host}:${port}`,
        timeoutMs,
        attempt: async (ctx) => {
            try {
                await tcpConnect(host, port, ctx.remainingMs());
            } catch (err) {
                return fail(`pmcd is not accepting connections at ${host}:${port}: ${(err as Error).message}`);
            }
            return pass(`pmcd accepts TCP connections at ${host}:${port}`);
        },
    };
}

function pmproxyHttp(target: Target, timeoutMs: number): CheckSpec {
    return {
        phase: "services",
        name: "pmproxy http /pmapi/context",
        timeoutMs,
        attempt: async (ctx) => {
            try {
                const context = await pmapiContext(target.pmproxyUrl, ctx.remainingMs());
                return pass(`pmproxy at ${target.pmproxyUrl} opened PMAPI context ${context}`);
            } catch (err) {
                return fail(`pmproxy at ${target.pmproxyUrl} did not open a PMAPI context: ${(err as Error).message}`);
            }
        },
    };
}

function grafanaHealth(target: Target, timeoutMs: number): CheckSpec {
    const base: CheckSpec = { phase: "services", name: "grafana /api/health", timeoutMs };
    if (target.grafanaUrl === undefined) return { ...base, skip: "no Grafana on this target (no grafanaUrl output)" };
    const url = joinUrl(target.grafanaUrl, "/api/health");
    return {
        ...base,
        attempt: async (ctx) => {
            const { status, json } = await httpGetJson(url, ctx.remainingMs());
            const database = typeof json === "object" && json !== null && "database" in json ? (json as { database: unknown }).database : undefined;
            if (status !== 200) return fail(`Grafana health ${url}: HTTP ${status}: ${excerpt(JSON.stringify(json))}`);
            if (database !== undefined && database !== "ok") return fail(`Grafana health ${url}: database is ${JSON.stringify(database)}, not "ok"`);
            return pass(`Grafana healthy at ${url}`);
        },
    };
}

function prometheusReady(target: Target, timeoutMs: number): CheckSpec {
    const base: CheckSpec = { phase: "services", name: "prometheus /-/ready", timeoutMs };
    if (target.prometheusUrl === undefined) return { ...base, skip: "no Prometheus on this target (no prometheusUrl output)" };
    const url = joinUrl(target.prometheusUrl, "/-/ready");
    return {
        ...base,
        attempt: async (ctx) => {
            const res = await httpGet(url, ctx.remainingMs());
            if (res.status !== 200) return fail(`Prometheus not ready at ${url}: HTTP ${res.status}: ${excerpt(res.body)}`);
            return pass(`Prometheus ready at ${url}`);
        },
    };
}

function nodeExporterMetrics(target: Target, timeoutMs: number): CheckSpec {
    const base: CheckSpec = { phase: "services", name: "node_exporter /metrics", timeoutMs };
    if (!target.features.nodeExporter) return { ...base, skip: "no node_exporter on this target (features.nodeExporter is false)" };
    if (target.nodeExporterUrl === undefined) return { ...base, skip: "node_exporter runs but no nodeExporterUrl is exported; it cannot be reached from here" };
    const url = joinUrl(target.nodeExporterUrl, "/metrics");
    return {
        ...base,
        attempt: async (ctx) => {
            const res = await httpGet(url, ctx.remainingMs());
            if (res.status !== 200) return fail(`node_exporter ${url}: HTTP ${res.status}: ${excerpt(res.body)}`);
            if (!/^node_\w+/m.test(res.body)) return fail(`node_exporter ${url}: HTTP 200 but no node_* samples: ${excerpt(res.body)}`);
            return pass(`node_exporter serves ${res.body.split("\n").filter((l) => /^node_/.test(l)).length} node_* samples at ${url}`);
        },
    };
}

// ---------------------------------------------------------------- metrics

/** A sample for messages: floats trimmed to 6 significant digits (PCP's FLOAT 0.54000002 reads 0.54). */
export function showNumber(v: number | string): string {
    return typeof v === "number" && !Number.isInteger(v) ? String(Number(v.toPrecision(6))) : String(v);
}

function formatValues(values: { instance: number | null; value: number | string }[]): string {
    const shown = values.slice(0, 3).map((v) => (v.instance === null ? showNumber(v.value) : `[${v.instance}] ${showNumber(v.value)}`));
    return shown.join(", ") + (values.length > 3 ? `, ... (${values.length} instances)` : "");
}

function metricPresent(target: Target, name: string, timeoutMs: number): CheckSpec {
    return {
        phase: "metrics",
        name,
        timeoutMs,
        attempt: async (ctx) => {
            let values;
            try {
                values = await pmapiFetch(target.pmproxyUrl, [name], ctx.remainingMs());
            } catch (err) {
                return fail(`cannot fetch ${name} through pmproxy ${target.pmproxyUrl}: ${(err as Error).message}`);
            }
            const instances = values.get(name);
            if (instances === undefined) return fail(`${name} is absent: pmproxy ${target.pmproxyUrl}/pmapi/fetch returned no value for it`);
            if (instances.length === 0) return fail(`${name} has no instances with values at pmproxy ${target.pmproxyUrl}`);
            return pass(`${name} = ${formatValues(instances)}`);
        },
    };
}

function metricCount(target: Target, timeoutMs: number): CheckSpec {
    const min = constants.metrics.minLinuxMetrics;
    const base: CheckSpec = { phase: "metrics", name: `at least ${min} metric names`, timeoutMs };
    if (!target.features.linuxPmda) return { ...base, skip: "the linux PMDA does not run on this target (features.linuxPmda is false)" };
    return {
        ...base,
        attempt: async (ctx) => {
            let names: string[];
            try {
                names = await pmapiAllMetricNames(target.pmproxyUrl, ctx.remainingMs());
            } catch (err) {
                return fail(`cannot list metric names through pmproxy ${target.pmproxyUrl}: ${(err as Error).message}`);
            }
            if (names.length < min) {
                return fail(`only ${names.length} metric names at pmproxy ${target.pmproxyUrl}/pmapi/metric, fewer than ${min}`);
            }
            return pass(`${names.length} metric names (at least ${min})`);
        },
    };
}

// ---------------------------------------------------------------- consoles

function consolePort(target: Target, which: "serial" | "virtio", timeoutMs: number): CheckSpec {
    const base: CheckSpec = { phase: "consoles", name: `${which} console`, timeoutMs };
    if (target.consoles === undefined) return { ...base, skip: "no consoles in this target's outputs (only MicroVMs have them)" };
    const host = target.consoles.host;
    const port = target.consoles[which];
    return {
        ...base,
        name: `${which} console tcp ${host}:${port}`,
        attempt: async (ctx) => {
            try {
                await tcpConnect(host, port, ctx.remainingMs());
            } catch (err) {
                return fail(`${which} console does not answer at ${host}:${port}: ${(err as Error).message}`);
            }
            return pass(`${which} console answers at ${host}:${port}`);
        },
    };
}

// ---------------------------------------------------------------- parity

function parityUnavailable(target: Target): string | undefined {
    if (!target.features.nodeExporter) return "no node_exporter on this target to compare with";
    if (target.nodeExporterUrl === undefined) return "no nodeExporterUrl is exported to compare with";
    if (!target.features.linuxPmda) return "the linux PMDA does not run on this target";
    return undefined;
}

const loadInstances = [
    { instance: 1, node: "node_load1", label: "1-minute" },
    { instance: 5, node: "node_load5", label: "5-minute" },
    { instance: 15, node: "node_load15", label: "15-minute" },
] as const;

async function loadParityAttempt(target: Target, nodeUrl: string, ctx: AttemptContext): Promise<CheckOutcome> {
    const tolerance = constants.metrics.parityTolerance;
    const loadByInstance = (m: Map<string, { instance: number | null; value: number | string }[]>): Map<number, number> => {
        const out = new Map<number, number>();
        for (const v of m.get("kernel.all.load") ?? []) if (v.instance !== null && typeof v.value === "number") out.set(v.instance, v.value);
        return out;
    };
    // PCP before and after node_exporter, so a value read between two kernel updates is recognised.
    const before = loadByInstance(await pmapiFetch(target.pmproxyUrl, ["kernel.all.load"], ctx.remainingMs()));
    const node = await scrapeNodeExporter(nodeUrl, loadInstances.map((l) => l.node), ctx.remainingMs());
    const after = loadByInstance(await pmapiFetch(target.pmproxyUrl, ["kernel.all.load"], ctx.remainingMs()));
    const shown: string[] = [];
    const problems: string[] = [];
    for (const l of loadInstances) {
        const samples = [before.get(l.instance), after.get(l.instance)].filter((x): x is number => x !== undefined);
        const other = node.get(l.node);
        if (samples.length === 0) {
            problems.push(`kernel.all.load ${l.label} is absent at pmproxy ${target.pmproxyUrl}`);
            continue;
        }
        if (other === undefined) {
            problems.push(`${l.node} is absent at ${nodeUrl}/metrics`);
            continue;
        }
        const verdict = compareWithSamples(samples, other, tolerance);
        shown.push(`${l.label} ${showNumber(samples[0])} vs ${showNumber(other)}`);
        if (!verdict.ok) {
            problems.push(
                `kernel.all.load ${l.label} ${samples.map(showNumber).join("/")} (pmproxy ${target.pmproxyUrl}) vs ${l.node} ${showNumber(other)} (${nodeUrl}) ` +
                    `differ by ${percent(verdict.deviation)}, more than ${percent(tolerance)}`,
            );
        }
    }
    if (problems.length > 0) return fail(problems.join("; "));
    return pass(`load averages agree within ${percent(tolerance)}: ${shown.join(", ")}`);
}

async function memoryParityAttempt(target: Target, nodeUrl: string, ctx: AttemptContext): Promise<CheckOutcome> {
    const tolerance = constants.metrics.parityTolerance;
    const desc = (await pmapiDescribe(target.pmproxyUrl, ["mem.physmem"], ctx.remainingMs())).get("mem.physmem");
    const units = desc?.units ?? "";
    const factor = bytesPerSpaceUnit(units);
    if (factor === undefined) return fail(`mem.physmem at pmproxy ${target.pmproxyUrl} has units "${units}", not a space unit`);
    const values = await pmapiFetch(target.pmproxyUrl, ["mem.physmem"], ctx.remainingMs());
    const raw = values.get("mem.physmem")?.[0]?.value;
    if (typeof raw !== "number") return fail(`mem.physmem is absent at pmproxy ${target.pmproxyUrl}`);
    const pcpBytes = raw * factor;
    const node = await scrapeNodeExporter(nodeUrl, ["node_memory_MemTotal_bytes"], ctx.remainingMs());
    const nodeBytes = node.get("node_memory_MemTotal_bytes");
    if (nodeBytes === undefined) return fail(`node_memory_MemTotal_bytes is absent at ${nodeUrl}/metrics`);
    const verdict = compareWithSamples([pcpBytes], nodeBytes, tolerance);
    const mib = (b: number): string => `${(b / 1024 ** 2).toFixed(1)} MiB`;
    if (!verdict.ok) {
        return fail(
            `mem.physmem ${raw} ${units} = ${mib(pcpBytes)} (pmproxy ${target.pmproxyUrl}) vs node_memory_MemTotal_bytes ${nodeBytes} = ${mib(nodeBytes)} ` +
                `(${nodeUrl}) differ by ${percent(verdict.deviation)}, more than ${percent(tolerance)}`,
        );
    }
    return pass(`memory agrees within ${percent(tolerance)}: mem.physmem ${mib(pcpBytes)} vs node_memory_MemTotal_bytes ${mib(nodeBytes)}`);
}

function parityCheck(target: Target, what: "load" | "memory", timeoutMs: number): CheckSpec {
    const base: CheckSpec = {
        phase: "parity",
        name: what === "load" ? "load: kernel.all.load vs node_load1/5/15" : "memory: mem.physmem vs node_memory_MemTotal_bytes",
        timeoutMs,
    };
    const why = parityUnavailable(target);
    if (why !== undefined || target.nodeExporterUrl === undefined) return { ...base, skip: why ?? "no nodeExporterUrl" };
    const nodeUrl = target.nodeExporterUrl;
    return { ...base, attempt: (ctx) => (what === "load" ? loadParityAttempt(target, nodeUrl, ctx) : memoryParityAttempt(target, nodeUrl, ctx)) };
}

// ---------------------------------------------------------------- pmie

function pmieChecks(name: string, target: Target, settings: CheckSettings): CheckSpec[] {
    const s: PmieSettings = { ...defaultPmieSettings(), ...settings.pmie };
    const heartbeat: CheckSpec = { phase: "pmie", name: "pmie heartbeat fresh", timeoutMs: budgetMs(settings, "pmie", s.heartbeatSeconds * 2) };
    const alert: CheckSpec = { phase: "pmie", name: `pmie ${s.rule} in alerts.log`, timeoutMs: budgetMs(settings, "pmie", alertBudgetSeconds(s)), selfTimed: true };
    if (!target.features.pmieTest) {
        const why = "no pmie test workload on this target (features.pmieTest is false)";
        return [{ ...heartbeat, skip: why }, { ...alert, skip: why }];
    }
    const shell = settings.shellFor ? settings.shellFor(name, target) : target.ssh ? sshShell(target.ssh) : undefined;
    if (shell === undefined) {
        const why = "the target has no ssh info in its outputs, so pmie cannot be checked";
        return [{ ...heartbeat, skip: why }, { ...alert, skip: why }];
    }
    return [
        { ...heartbeat, attempt: (ctx) => checkHeartbeat(shell, s, ctx) },
        { ...alert, attempt: (ctx) => checkAlertGrows(shell, s, ctx) },
    ];
}

// ---------------------------------------------------------------- all phases

export function buildChecks(name: string, target: Target, settings: CheckSettings = {}): Record<VerifyPhase, CheckSpec[]> {
    const t = constants.timeoutsSeconds;
    const services = budgetMs(settings, "services", servicesSeconds(target));
    const metrics = budgetMs(settings, "metrics", t.metrics);
    const required = constants.metrics.required.map((m) => metricPresent(target, m, metrics));
    const bpfBudget = metrics;
    const bpf = constants.metrics.bpf.map((m): CheckSpec =>
        target.features.bpf
            ? metricPresent(target, m, bpfBudget)
            : { phase: "metrics", name: m, timeoutMs: bpfBudget, skip: "not a BPF target (features.bpf is false)" },
    );
    return {
        services: [
            pmcdTcp(target, services),
            pmproxyHttp(target, services),
            grafanaHealth(target, services),
            ...grafanaDatasourceChecks(target, settings.grafana ?? {}, services),
            prometheusReady(target, services),
            nodeExporterMetrics(target, services),
        ],
        metrics: [...required, ...bpf, grafanaVectorQuery(target, settings.grafana ?? {}, metrics), metricCount(target, metrics)],
        consoles: [
            consolePort(target, "serial", budgetMs(settings, "consoles", t.serial)),
            consolePort(target, "virtio", budgetMs(settings, "consoles", t.virtio)),
        ],
        parity: [parityCheck(target, "load", budgetMs(settings, "parity", t.metrics)), parityCheck(target, "memory", budgetMs(settings, "parity", t.metrics))],
        pmie: pmieChecks(name, target, settings),
    };
}
