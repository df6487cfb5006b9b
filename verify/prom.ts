/**
 * Reads sample values out of the Prometheus text exposition format that
 * node_exporter's /metrics serves.
 */
import { excerpt, httpGet, joinUrl, ProbeError } from "./net";

/**
 * Values of unlabelled samples (`name value [timestamp]`) or the first sample
 * of a labelled series, for the requested metric names.
 */
export function parseExposition(text: string, names: readonly string[]): Map<string, number> {
    const wanted = new Set(names);
    const result = new Map<string, number>();
    for (const rawLine of text.split("\n")) {
        const line = rawLine.trim();
        if (line === "" || line.startsWith("#")) continue;
        const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
        if (!m) continue;
        const name = m[1];
        if (!wanted.has(name) || result.has(name)) continue;
        const valueText = m[3];
        const value = valueText === "+Inf" ? Infinity : valueText === "-Inf" ? -Infinity : Number(valueText);
        if (!Number.isNaN(value)) result.set(name, value);
    }
    return result;
}

/** GET node_exporter's /metrics and return the requested samples; throws naming the URL on any problem. */
export async function scrapeNodeExporter(baseUrl: string, names: readonly string[], timeoutMs: number): Promise<Map<string, number>> {
    const url = joinUrl(baseUrl, "/metrics");
    const res = await httpGet(url, timeoutMs);
    if (res.status !== 200) throw new ProbeError(`GET ${url}: HTTP ${res.status}: ${excerpt(res.body)}`);
    return parseExposition(res.body, names);
}
