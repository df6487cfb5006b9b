/**
 * Grafana's side of verify: every datasource the catalog provisions answers
 * through Grafana, and a kernel.all.load query through the PCP Vector
 * datasource returns data (live PCP in Grafana). Grafana's API needs the admin
 * login; the password is the stack's secret output grafanaAdminPassword.
 */
import { type CatalogDatasource, grafanaCatalog, type GrafanaCatalog } from "../components/grafanaCatalog";
import { excerpt, httpGetJson, joinUrl } from "./net";
import type { CheckSpec } from "./runner";
import type { CheckOutcome, Target } from "./types";
import { fail, pass } from "./types";

export const grafanaAdminUser = "admin";

/** What the Grafana checks need besides the target. */
export interface GrafanaAccess {
    /** The stack output grafanaAdminPassword; absent or "[secret]" when it could not be read. */
    password?: string;
    catalog?: GrafanaCatalog;
}

const noPassword =
    "no usable grafanaAdminPassword output: run verify with --stack (the Automation API decrypts it), " +
    "or write the outputs with `pulumi stack output --json --show-secrets > FILE`";

function authHeader(password: string): Record<string, string> {
    return { authorization: `Basic ${Buffer.from(`${grafanaAdminUser}:${password}`).toString("base64")}` };
}

function isRecord(v: unknown): v is Record<string, unknown> {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

async function getJson(url: string, password: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const { status, json } = await httpGetJson(url, timeoutMs, authHeader(password));
    if (status !== 200 || !isRecord(json)) {
        const message = isRecord(json) && typeof json.message === "string" ? json.message : excerpt(JSON.stringify(json));
        throw new Error(`GET ${url}: HTTP ${status}: ${message}`);
    }
    return json;
}

/** The PMWEBAPI calls the Vector plugin makes, through Grafana's datasource proxy: a context, then a fetch. */
async function fetchThroughProxy(grafanaUrl: string, ds: CatalogDatasource, names: string[], password: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const base = joinUrl(grafanaUrl, `/api/datasources/proxy/uid/${encodeURIComponent(ds.uid)}`);
    const hostspec = ds.jsonData?.hostspec ?? "127.0.0.1";
    const ctx = await getJson(`${base}/pmapi/context?hostspec=${encodeURIComponent(hostspec)}&polltimeout=30`, password, timeoutMs);
    if (typeof ctx.context !== "number") throw new Error(`${base}/pmapi/context: no context in ${excerpt(JSON.stringify(ctx))}`);
    return getJson(`${base}/pmapi/fetch?context=${ctx.context}&names=${names.map(encodeURIComponent).join(",")}`, password, timeoutMs);
}

/** Numeric instance values of `name` in a /pmapi/fetch answer. */
function valuesOf(fetched: Record<string, unknown>, name: string): number[] {
    const values = Array.isArray(fetched.values) ? fetched.values : [];
    const entry = values.find((v): v is Record<string, unknown> => isRecord(v) && v.name === name);
    const instances = entry && Array.isArray(entry.instances) ? entry.instances : [];
    return instances.flatMap((i) => (isRecord(i) && typeof i.value === "number" ? [i.value] : []));
}

async function datasourceAnswers(grafanaUrl: string, ds: CatalogDatasource, password: string, timeoutMs: number): Promise<CheckOutcome> {
    if (ds.check === "health-api") {
        const url = joinUrl(grafanaUrl, `/api/datasources/uid/${encodeURIComponent(ds.uid)}/health`);
        const json = await getJson(url, password, timeoutMs);
        if (json.status !== "OK") return fail(`${ds.name} (${ds.uid}) health at ${url}: status ${JSON.stringify(json.status)}: ${excerpt(String(json.message ?? ""))}`);
        return pass(`${ds.name} (${ds.uid}) healthy: ${excerpt(String(json.message ?? "OK"))}`);
    }
    const fetched = await fetchThroughProxy(grafanaUrl, ds, ["pmcd.version"], password, timeoutMs);
    const values = Array.isArray(fetched.values) ? fetched.values : [];
    const entry = values.find((v) => isRecord(v) && v.name === "pmcd.version");
    const version = isRecord(entry) && Array.isArray(entry.instances) && isRecord(entry.instances[0]) ? entry.instances[0].value : undefined;
    if (version === undefined) return fail(`${ds.name} (${ds.uid}) through Grafana's proxy: pmcd.version missing from ${excerpt(JSON.stringify(fetched))}`);
    return pass(`${ds.name} (${ds.uid}) answers through Grafana's proxy: PCP ${String(version)}`);
}

/** An attempt that needs the admin login: no usable password is a FAIL saying how to get one; a throw is a FAIL after `failure`. */
function loggedIn(access: GrafanaAccess, failure: string, body: (password: string, ms: number) => Promise<CheckOutcome>): CheckSpec["attempt"] {
    return async (ctx) => {
        const password = access.password;
        if (password === undefined || password === "" || password === "[secret]") return fail(noPassword);
        try {
            return await body(password, ctx.remainingMs());
        } catch (err) {
            return fail(`${failure}: ${(err as Error).message}`);
        }
    };
}

function noGrafana(target: Target): string | undefined {
    return target.grafanaUrl === undefined ? "no Grafana on this target (no grafanaUrl output)" : undefined;
}

/** services phase: one check per provisioned datasource. */
export function grafanaDatasourceChecks(target: Target, access: GrafanaAccess, timeoutMs: number): CheckSpec[] {
    const catalog = access.catalog ?? grafanaCatalog;
    return Object.values(catalog.datasources).map((ds): CheckSpec => {
        const base: CheckSpec = { phase: "services", name: `grafana datasource ${ds.name}`, timeoutMs };
        const why = noGrafana(target);
        if (why !== undefined) return { ...base, skip: why };
        const grafanaUrl = target.grafanaUrl!;
        const failure = `${ds.name} (${ds.uid}) did not answer through Grafana at ${grafanaUrl}`;
        return { ...base, attempt: loggedIn(access, failure, (password, ms) => datasourceAnswers(grafanaUrl, ds, password, ms)) };
    });
}

/** metrics phase: kernel.all.load through the Vector datasource returns numbers. */
export function grafanaVectorQuery(target: Target, access: GrafanaAccess, timeoutMs: number, metric = "kernel.all.load"): CheckSpec {
    const catalog = access.catalog ?? grafanaCatalog;
    const base: CheckSpec = { phase: "metrics", name: `grafana Vector query ${metric}`, timeoutMs };
    const why = noGrafana(target);
    if (why !== undefined) return { ...base, skip: why };
    const vector = Object.values(catalog.datasources).find((ds) => ds.check === "pmapi-proxy");
    if (vector === undefined) return { ...base, skip: "the catalog provisions no PCP Vector datasource" };
    const grafanaUrl = target.grafanaUrl!;
    const query = async (password: string, ms: number): Promise<CheckOutcome> => {
        const fetched = await fetchThroughProxy(grafanaUrl, vector, [metric], password, ms);
        const values = valuesOf(fetched, metric);
        if (values.length === 0) return fail(`${vector.name} at ${grafanaUrl} returned no values of ${metric}: ${excerpt(JSON.stringify(fetched))}`);
        return pass(`${vector.name} at ${grafanaUrl} returned ${metric} = ${values.join(", ")}`);
    };
    return { ...base, attempt: loggedIn(access, `${metric} through ${vector.name} at ${grafanaUrl} failed`, query) };
}
