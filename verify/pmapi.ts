/**
 * A small client for pmproxy's PMWEBAPI REST interface (PMWEBAPI(3)):
 * /pmapi/context, /pmapi/fetch?names=..., /pmapi/metric (descriptors, or every
 * name in the PMNS when no parameter is given).
 */
import { excerpt, httpGetJson, joinUrl, ProbeError } from "./net";

export interface PmapiInstanceValue {
    instance: number | null;
    value: number | string;
}

export interface PmapiMetricDesc {
    name: string;
    pmid?: string;
    type?: string;
    sem?: string;
    units?: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** pmproxy reports errors as {"success":false,"message":"..."}; surface that message. */
function pmproxyError(url: string, status: number, json: unknown): ProbeError {
    const message = isRecord(json) && typeof json.message === "string" ? json.message : excerpt(JSON.stringify(json));
    return new ProbeError(`GET ${url}: HTTP ${status}: ${message}`);
}

/** Opens a PMAPI context through pmproxy; proves pmproxy answers HTTP and reaches its pmcd. */
export async function pmapiContext(pmproxyUrl: string, timeoutMs: number): Promise<number> {
    const url = joinUrl(pmproxyUrl, "/pmapi/context");
    const { status, json } = await httpGetJson(url, timeoutMs);
    if (status !== 200 || !isRecord(json) || typeof json.context !== "number") throw pmproxyError(url, status, json);
    return json.context;
}

/**
 * Fetches current values. The result maps each requested name to its instances;
 * a name pmcd does not know is simply absent from pmproxy's answer, so it is
 * absent from the map.
 */
export async function pmapiFetch(pmproxyUrl: string, names: string[], timeoutMs: number): Promise<Map<string, PmapiInstanceValue[]>> {
    const url = joinUrl(pmproxyUrl, `/pmapi/fetch?names=${names.map(encodeURIComponent).join(",")}`);
    const { status, json } = await httpGetJson(url, timeoutMs);
    if (status !== 200 || !isRecord(json) || !Array.isArray(json.values)) throw pmproxyError(url, status, json);
    const result = new Map<string, PmapiInstanceValue[]>();
    for (const entry of json.values) {
        if (!isRecord(entry) || typeof entry.name !== "string" || !Array.isArray(entry.instances)) continue;
        const instances: PmapiInstanceValue[] = [];
        for (const inst of entry.instances) {
            if (!isRecord(inst)) continue;
            const value = inst.value;
            if (typeof value !== "number" && typeof value !== "string") continue;
            const instance = typeof inst.instance === "number" ? inst.instance : null;
            instances.push({ instance, value });
        }
        result.set(entry.name, instances);
    }
    return result;
}

/** Every metric name in pmcd's namespace, from /pmapi/metric without parameters. */
export async function pmapiAllMetricNames(pmproxyUrl: string, timeoutMs: number): Promise<string[]> {
    const url = joinUrl(pmproxyUrl, "/pmapi/metric");
    const { status, json } = await httpGetJson(url, timeoutMs);
    if (status !== 200 || !isRecord(json) || !Array.isArray(json.metrics)) throw pmproxyError(url, status, json);
    const names = new Set<string>();
    for (const m of json.metrics) {
        if (isRecord(m) && typeof m.name === "string") names.add(m.name);
    }
    return [...names];
}

/** Descriptors of the named metrics; throws when one is unknown (pmproxy answers 400 then). */
export async function pmapiDescribe(pmproxyUrl: string, names: string[], timeoutMs: number): Promise<Map<string, PmapiMetricDesc>> {
    const url = joinUrl(pmproxyUrl, `/pmapi/metric?names=${names.map(encodeURIComponent).join(",")}`);
    const { status, json } = await httpGetJson(url, timeoutMs);
    if (status !== 200 || !isRecord(json) || !Array.isArray(json.metrics)) throw pmproxyError(url, status, json);
    const result = new Map<string, PmapiMetricDesc>();
    for (const m of json.metrics) {
        if (!isRecord(m) || typeof m.name !== "string") continue;
        const desc: PmapiMetricDesc = { name: m.name };
        if (typeof m.pmid === "string") desc.pmid = m.pmid;
        if (typeof m.type === "string") desc.type = m.type;
        if (typeof m.sem === "string") desc.sem = m.sem;
        if (typeof m.units === "string") desc.units = m.units;
        result.set(m.name, desc);
    }
    return result;
}

/** Bytes per unit for PCP space units as pmUnitsStr(3) prints them ("Kbyte", "Mbyte", ...). */
export function bytesPerSpaceUnit(units: string): number | undefined {
    const table: Record<string, number> = {
        byte: 1,
        Kbyte: 1024,
        Mbyte: 1024 ** 2,
        Gbyte: 1024 ** 3,
        Tbyte: 1024 ** 4,
        Pbyte: 1024 ** 5,
        Ebyte: 1024 ** 6,
    };
    return table[units.trim()];
}
