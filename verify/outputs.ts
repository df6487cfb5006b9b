/**
 * Reads a stack's outputs and validates the `targets` output against the
 * contract. Every problem is collected with the path of the field at fault,
 * so a broken output is reported in one go.
 */
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import type { ConsoleEndpoints, HostPort, SshEndpoint, StackOutputs, Target, TargetFeatures } from "./types";

export class OutputsError extends Error {
    constructor(
        public readonly source: string,
        public readonly problems: string[],
    ) {
        super(`stack outputs from ${source} are not usable:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
        this.name = "OutputsError";
    }
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function isObject(v: unknown): v is JsonObject {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The Automation API returns `{ name: { value, secret } }`; the CLI's
 * `pulumi stack output --json` returns `{ name: value }`. Accept both.
 */
export function unwrapOutputMap(raw: unknown): JsonObject | undefined {
    if (!isObject(raw)) return undefined;
    const entries = Object.entries(raw);
    const wrapped =
        entries.length > 0 &&
        entries.every(([, v]) => isObject(v) && Object.keys(v).every((k) => k === "value" || k === "secret") && "value" in v);
    if (!wrapped) return raw;
    const out: JsonObject = {};
    for (const [k, v] of entries) out[k] = (v as JsonObject).value;
    return out;
}

class Validator {
    readonly problems: string[] = [];

    string(obj: JsonObject, key: string, where: string, required: true): string;
    string(obj: JsonObject, key: string, where: string, required: false): string | undefined;
    string(obj: JsonObject, key: string, where: string, required: boolean): string | undefined {
        const v = obj[key];
        if (v === undefined) {
            if (required) this.problems.push(`${where}.${key}: missing (expected a string)`);
            return undefined;
        }
        if (typeof v !== "string" || v === "") {
            this.problems.push(`${where}.${key}: expected a non-empty string, got ${JSON.stringify(v)}`);
            return undefined;
        }
        return v;
    }

    url(obj: JsonObject, key: string, where: string, required: boolean): string | undefined {
        const v = required ? this.string(obj, key, where, true) : this.string(obj, key, where, false);
        if (v === undefined) return undefined;
        try {
            const u = new URL(v);
            if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("scheme");
        } catch {
            this.problems.push(`${where}.${key}: "${v}" is not an http(s) URL`);
            return undefined;
        }
        return v.replace(/\/+$/, "");
    }

    port(obj: JsonObject, key: string, where: string): number | undefined {
        const v = obj[key];
        if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65535) {
            this.problems.push(`${where}.${key}: expected a TCP port number (1-65535), got ${JSON.stringify(v)}`);
            return undefined;
        }
        return v;
    }

    boolean(obj: JsonObject, key: string, where: string): boolean {
        const v = obj[key];
        if (typeof v !== "boolean") {
            this.problems.push(`${where}.${key}: expected true or false, got ${JSON.stringify(v)}`);
            return false;
        }
        return v;
    }

    object(obj: JsonObject, key: string, where: string, required: boolean): JsonObject | undefined {
        const v = obj[key];
        if (v === undefined) {
            if (required) this.problems.push(`${where}.${key}: missing (expected an object)`);
            return undefined;
        }
        if (!isObject(v)) {
            this.problems.push(`${where}.${key}: expected an object, got ${JSON.stringify(v)}`);
            return undefined;
        }
        return v;
    }

    oneOf<T extends string>(obj: JsonObject, key: string, where: string, allowed: readonly T[], required: boolean): T | undefined {
        const v = obj[key];
        if (v === undefined) {
            if (required) this.problems.push(`${where}.${key}: missing (expected one of ${allowed.join(", ")})`);
            return undefined;
        }
        if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) {
            this.problems.push(`${where}.${key}: expected one of ${allowed.join(", ")}, got ${JSON.stringify(v)}`);
            return undefined;
        }
        return v as T;
    }
}

function parseTarget(v: Validator, raw: Json, where: string): Target | undefined {
    if (!isObject(raw)) {
        v.problems.push(`${where}: expected an object, got ${JSON.stringify(raw)}`);
        return undefined;
    }
    const before = v.problems.length;
    const kind = v.oneOf(raw, "kind", where, ["vm", "container", "daemonset"] as const, true);
    const variant = v.oneOf(raw, "variant", where, ["base", "eval", "grafana", "bpf"] as const, false);
    const networking = v.oneOf(raw, "networking", where, ["user", "tap"] as const, false);

    let pmcd: HostPort | undefined;
    const pmcdRaw = v.object(raw, "pmcd", where, true);
    if (pmcdRaw) {
        const host = v.string(pmcdRaw, "host", `${where}.pmcd`, true);
        const port = v.port(pmcdRaw, "port", `${where}.pmcd`);
        if (host !== undefined && port !== undefined) pmcd = { host, port };
    }
    const pmproxyUrl = v.url(raw, "pmproxyUrl", where, true);
    const nodeExporterUrl = v.url(raw, "nodeExporterUrl", where, false);
    const grafanaUrl = v.url(raw, "grafanaUrl", where, false);
    const prometheusUrl = v.url(raw, "prometheusUrl", where, false);

    let consoles: ConsoleEndpoints | undefined;
    const consolesRaw = v.object(raw, "consoles", where, false);
    if (consolesRaw) {
        const host = v.string(consolesRaw, "host", `${where}.consoles`, true);
        const serial = v.port(consolesRaw, "serial", `${where}.consoles`);
        const virtio = v.port(consolesRaw, "virtio", `${where}.consoles`);
        if (host !== undefined && serial !== undefined && virtio !== undefined) consoles = { host, serial, virtio };
    }

    let ssh: SshEndpoint | undefined;
    const sshRaw = v.object(raw, "ssh", where, false);
    if (sshRaw) {
        const host = v.string(sshRaw, "host", `${where}.ssh`, true);
        const port = v.port(sshRaw, "port", `${where}.ssh`);
        const user = v.string(sshRaw, "user", `${where}.ssh`, true);
        const identityFile = v.string(sshRaw, "identityFile", `${where}.ssh`, false);
        if (host !== undefined && port !== undefined && user !== undefined) {
            ssh = { host, port, user };
            if (identityFile !== undefined) ssh.identityFile = identityFile;
        }
    }

    let features: TargetFeatures | undefined;
    const featuresRaw = v.object(raw, "features", where, true);
    if (featuresRaw) {
        features = {
            linuxPmda: v.boolean(featuresRaw, "linuxPmda", `${where}.features`),
            bpf: v.boolean(featuresRaw, "bpf", `${where}.features`),
            pmieTest: v.boolean(featuresRaw, "pmieTest", `${where}.features`),
            nodeExporter: v.boolean(featuresRaw, "nodeExporter", `${where}.features`),
        };
    }

    if (v.problems.length > before || kind === undefined || pmcd === undefined || pmproxyUrl === undefined || features === undefined) {
        return undefined;
    }
    const target: Target = { kind, pmcd, pmproxyUrl, features };
    if (variant !== undefined) target.variant = variant;
    if (networking !== undefined) target.networking = networking;
    if (nodeExporterUrl !== undefined) target.nodeExporterUrl = nodeExporterUrl;
    if (grafanaUrl !== undefined) target.grafanaUrl = grafanaUrl;
    if (prometheusUrl !== undefined) target.prometheusUrl = prometheusUrl;
    if (consoles !== undefined) target.consoles = consoles;
    if (ssh !== undefined) target.ssh = ssh;
    return target;
}

/** Prefix of the targets made from the DaemonSet's per-node endpoints. */
export const daemonSetTargetPrefix = "daemonset-";

/**
 * The DaemonSet's pods are not in `targets`; the program exports them per node
 * as `kubernetes.pmcdEndpoints` ("host:port") and `kubernetes.pmproxyUrls`.
 * Each node becomes a target "daemonset-<node>" running the container image
 * (pmcd with the linux PMDA, nothing else verify checks).
 */
function daemonSetTargets(v: Validator, outputs: JsonObject): Record<string, Target> {
    const k8s = v.object(outputs, "kubernetes", "outputs", false);
    if (!k8s) return {};
    const endpoints = v.object(k8s, "pmcdEndpoints", "outputs.kubernetes", false) ?? {};
    const urls = v.object(k8s, "pmproxyUrls", "outputs.kubernetes", false) ?? {};
    const result: Record<string, Target> = {};
    for (const node of Object.keys(endpoints)) {
        const where = `outputs.kubernetes.pmcdEndpoints`;
        const ep = endpoints[node];
        const m = typeof ep === "string" ? /^(.+):(\d+)$/.exec(ep) : null;
        const port = m ? Number(m[2]) : NaN;
        if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
            v.problems.push(`${where}.${node}: expected "host:port", got ${JSON.stringify(ep)}`);
            continue;
        }
        const pmproxyUrl = v.url(urls, node, "outputs.kubernetes.pmproxyUrls", true);
        if (pmproxyUrl === undefined) continue;
        result[`${daemonSetTargetPrefix}${node}`] = {
            kind: "daemonset",
            pmcd: { host: m[1].replace(/^\[(.*)\]$/, "$1"), port },
            pmproxyUrl,
            features: { linuxPmda: true, bpf: false, pmieTest: false, nodeExporter: false },
        };
    }
    return result;
}

/** Validates raw outputs (either JSON shape) into StackOutputs, or throws OutputsError naming every bad field. */
export function parseStackOutputs(raw: unknown, source: string): StackOutputs {
    const outputs = unwrapOutputMap(raw);
    if (outputs === undefined) {
        throw new OutputsError(source, [`expected a JSON object of stack outputs, got ${JSON.stringify(raw)?.slice(0, 80)}`]);
    }
    const v = new Validator();
    const targetsRaw = outputs.targets;
    if (targetsRaw === undefined) {
        throw new OutputsError(source, [
            "outputs.targets: missing; the stack has no `targets` output (run `pulumi up` first, or check the stack name)",
        ]);
    }
    if (!isObject(targetsRaw)) {
        throw new OutputsError(source, [`outputs.targets: expected an object of targets, got ${JSON.stringify(targetsRaw)}`]);
    }
    const targets: Record<string, Target> = {};
    for (const [name, t] of Object.entries(targetsRaw)) {
        const parsed = parseTarget(v, t, `outputs.targets.${name}`);
        if (parsed) targets[name] = parsed;
    }
    const grafanaUrl = v.url(outputs, "grafanaUrl", "outputs", false);
    const prometheusUrl = v.url(outputs, "prometheusUrl", "outputs", false);
    const grafanaAdminPassword = v.string(outputs, "grafanaAdminPassword", "outputs", false);
    const dashboardsRaw = v.object(outputs, "grafanaDashboards", "outputs", false);
    const grafanaDashboards: Record<string, string> = {};
    for (const uid of Object.keys(dashboardsRaw ?? {})) {
        const url = v.url(dashboardsRaw!, uid, "outputs.grafanaDashboards", true);
        if (url !== undefined) grafanaDashboards[uid] = url;
    }
    if (!Object.values(targets).some((t) => t.kind === "daemonset")) {
        Object.assign(targets, daemonSetTargets(v, outputs));
    }
    if (v.problems.length > 0) throw new OutputsError(source, v.problems);
    const result: StackOutputs = { targets };
    if (grafanaUrl !== undefined) result.grafanaUrl = grafanaUrl;
    if (prometheusUrl !== undefined) result.prometheusUrl = prometheusUrl;
    if (grafanaAdminPassword !== undefined) result.grafanaAdminPassword = grafanaAdminPassword;
    if (dashboardsRaw !== undefined) result.grafanaDashboards = grafanaDashboards;
    if (typeof outputs.summary === "string") result.summary = outputs.summary;
    return result;
}

export async function readOutputsFile(file: string): Promise<StackOutputs> {
    let text: string;
    try {
        text = await readFile(file, "utf8");
    } catch (err) {
        throw new OutputsError(file, [`cannot read the outputs file: ${(err as Error).message}`]);
    }
    let raw: unknown;
    try {
        raw = JSON.parse(text);
    } catch (err) {
        throw new OutputsError(file, [`not JSON (${(err as Error).message}); write it with \`pulumi stack output --json > FILE\``]);
    }
    return parseStackOutputs(raw, file);
}

/** A readable one-line reason from an Automation API error (whose message embeds the CLI's stdout and stderr). */
export function describeAutomationError(err: unknown): string {
    const text = err instanceof Error ? err.message : String(err);
    if (/ENOENT/.test(text) && /pulumi/.test(text)) return "the pulumi CLI is not on PATH";
    const lines = text.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !/^(code|stdout|err\?):/.test(l));
    const diag = lines.find((l) => /error:/i.test(l)) ?? lines.find((l) => l.startsWith("stderr:")) ?? lines[0] ?? "unknown error";
    const line = diag.replace(/^stderr:\s*/, "");
    return line.length > 300 ? `${line.slice(0, 300)}...` : line;
}

/** The project directory: the one holding Pulumi.yaml, above verify/. */
export const projectDir = path.resolve(__dirname, "..");

/**
 * Reads a stack's outputs with the Automation API (LocalWorkspace over the
 * project directory), i.e. what `pulumi stack output --json --stack NAME` shows.
 * The Pulumi CLI must be on PATH.
 */
export async function readStackOutputs(stackName: string, workDir: string = projectDir): Promise<StackOutputs> {
    const source = `stack "${stackName}" (${workDir})`;
    let raw: unknown;
    try {
        const { LocalWorkspace } = await import("@pulumi/pulumi/automation");
        const stack = await LocalWorkspace.selectStack({ stackName, workDir });
        raw = await stack.outputs();
    } catch (err) {
        throw new OutputsError(source, [
            `could not read the outputs with the Pulumi Automation API: ${describeAutomationError(err)}` +
                " (is the pulumi CLI on PATH and the stack created? Alternatively pass --outputs FILE from `pulumi stack output --json`)",
        ]);
    }
    return parseStackOutputs(raw, source);
}
