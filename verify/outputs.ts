/**
 * Reads a stack's outputs and validates the `targets` output against the
 * contract. Every problem is collected with the path of the field at fault,
 * so a broken output is reported in one go.
 */
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import { z } from "zod";
import type { StackOutputs, Target } from "./types";

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

// The contract of one target, with the hand-written validator's words: the
// field's path, what was expected, what came ("missing" when nothing did).
const got = (v: unknown): string => JSON.stringify(v);
const expecting = (what: string) => ({
    error: (i: { input: unknown }) => (i.input === undefined ? `missing (expected ${what})` : `expected ${what}, got ${got(i.input)}`),
});
const always = (text: string) => ({ error: (i: { input: unknown }) => `${text}, got ${got(i.input)}` });
const str = z.string(expecting("a string")).min(1, always("expected a non-empty string"));
const portMsg = always("expected a TCP port number (1-65535)");
const port = z.number(portMsg).int(portMsg).min(1, portMsg).max(65535, portMsg);
const bool = z.boolean(always("expected true or false"));
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) => z.enum(values, expecting(`one of ${values.join(", ")}`));
const obj = <S extends z.ZodRawShape>(shape: S) => z.object(shape, expecting("an object"));
const url = str
    .refine(
        (v) => {
            try {
                return ["http:", "https:"].includes(new URL(v).protocol);
            } catch {
                return false;
            }
        },
        { error: (i) => `${got(i.input)} is not an http(s) URL` },
    )
    .transform((v) => v.replace(/\/+$/, ""));

const targetSchema = obj({
    kind: oneOf(["vm", "container", "daemonset"]),
    variant: oneOf(["base", "eval", "grafana", "bpf"]).optional(),
    networking: oneOf(["user", "tap"]).optional(),
    pmcd: obj({ host: str, port }),
    pmproxyUrl: url,
    nodeExporterUrl: url.optional(),
    grafanaUrl: url.optional(),
    prometheusUrl: url.optional(),
    consoles: obj({ host: str, serial: port, virtio: port }).optional(),
    ssh: obj({ host: str, port, user: str, identityFile: str.optional() }).optional(),
    features: obj({ linuxPmda: bool, bpf: bool, pmieTest: bool, nodeExporter: bool }),
});

/** Parses `raw` with `schema`; each problem goes to `problems` as "<where>.<path>: <message>". */
function check<T>(schema: z.ZodType<T>, raw: unknown, where: string, problems: string[]): T | undefined {
    const r = schema.safeParse(raw);
    if (r.success) return r.data;
    for (const issue of r.error.issues) problems.push(`${[where, ...issue.path.map(String)].join(".")}: ${issue.message}`);
    return undefined;
}

/** Prefix of the targets made from the DaemonSet's per-node endpoints. */
export const daemonSetTargetPrefix = "daemonset-";

/**
 * The DaemonSet's pods are not in `targets`; the program exports them per node
 * as `kubernetes.pmcdEndpoints` ("host:port") and `kubernetes.pmproxyUrls`.
 * Each node becomes a target "daemonset-<node>" running the container image
 * (pmcd with the linux PMDA, nothing else verify checks).
 */
function daemonSetTargets(problems: string[], outputs: JsonObject): Record<string, Target> {
    const k8s = check(obj({ pmcdEndpoints: z.record(z.string(), z.unknown()).optional(), pmproxyUrls: z.record(z.string(), z.unknown()).optional() }).optional(),
        outputs.kubernetes, "outputs.kubernetes", problems);
    const endpoints = k8s?.pmcdEndpoints ?? {};
    const result: Record<string, Target> = {};
    for (const [node, ep] of Object.entries(endpoints)) {
        const m = typeof ep === "string" ? /^(.+):(\d+)$/.exec(ep) : null;
        const port = m ? Number(m[2]) : NaN;
        if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
            problems.push(`outputs.kubernetes.pmcdEndpoints.${node}: expected "host:port", got ${got(ep)}`);
            continue;
        }
        const pmproxyUrl = check(url, k8s?.pmproxyUrls?.[node], `outputs.kubernetes.pmproxyUrls.${node}`, problems);
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
    const problems: string[] = [];
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
        const parsed = check(targetSchema, t, `outputs.targets.${name}`, problems);
        if (parsed) targets[name] = parsed;
    }
    const grafanaUrl = check(url.optional(), outputs.grafanaUrl, "outputs.grafanaUrl", problems);
    const prometheusUrl = check(url.optional(), outputs.prometheusUrl, "outputs.prometheusUrl", problems);
    const grafanaAdminPassword = check(str.optional(), outputs.grafanaAdminPassword, "outputs.grafanaAdminPassword", problems);
    const grafanaDashboards = check(z.record(z.string(), url, expecting("an object of dashboard URLs by uid")).optional(),
        outputs.grafanaDashboards, "outputs.grafanaDashboards", problems);
    if (!Object.values(targets).some((t) => t.kind === "daemonset")) {
        Object.assign(targets, daemonSetTargets(problems, outputs));
    }
    if (problems.length > 0) throw new OutputsError(source, problems);
    const result: StackOutputs = { targets };
    if (grafanaUrl !== undefined) result.grafanaUrl = grafanaUrl;
    if (prometheusUrl !== undefined) result.prometheusUrl = prometheusUrl;
    if (grafanaAdminPassword !== undefined) result.grafanaAdminPassword = grafanaAdminPassword;
    if (grafanaDashboards !== undefined) result.grafanaDashboards = grafanaDashboards;
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
