/**
 * Checks a dashboard's queries against the metric names real daemons serve:
 * PCP names from pmcd (through pmproxy's /pmapi/metric), Prometheus series
 * from pmproxy's and node_exporter's /metrics. Used by the integration test
 * that proves every provisioned dashboard queries metrics that exist.
 */
import { type DashboardQuery, type GrafanaCatalog, grafanaCatalog, queryMetricNames } from "../../components/grafanaCatalog";

/** Series in the Prometheus text exposition format: name -> label sets seen. */
export function exposedSeries(text: string): Map<string, Array<Record<string, string>>> {
    const series = new Map<string, Array<Record<string, string>>>();
    for (const raw of text.split("\n")) {
        const line = raw.trim();
        if (line === "" || line.startsWith("#")) continue;
        const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+\S+/.exec(line);
        if (!m) continue;
        const labels: Record<string, string> = {};
        for (const l of (m[2] ?? "").matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
        const list = series.get(m[1]) ?? [];
        list.push(labels);
        series.set(m[1], list);
    }
    return series;
}

/** `name{label="value",...}` selectors with equality matchers in a PromQL expression. */
export function equalitySelectors(expr: string): Array<{ name: string; labels: Record<string, string> }> {
    const out: Array<{ name: string; labels: Record<string, string> }> = [];
    for (const m of expr.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}/g)) {
        const labels: Record<string, string> = {};
        for (const l of m[2].matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
        out.push({ name: m[1], labels });
    }
    return out;
}

export interface KnownMetrics {
    /** PCP metric names pmcd knows. */
    pcp: ReadonlySet<string>;
    /** Prometheus series (pmproxy's /metrics and node_exporter's together). */
    prometheus: ReadonlyMap<string, ReadonlyArray<Record<string, string>>>;
}

/** Every problem of the queries: a metric nobody serves, or a label selector no series matches. */
export function missingMetrics(queries: readonly DashboardQuery[], known: KnownMetrics, catalog: GrafanaCatalog = grafanaCatalog): string[] {
    const problems: string[] = [];
    for (const q of queries) {
        const where = `dashboard ${q.dashboard}, panel "${q.panel}", ${q.datasource} query ${JSON.stringify(q.expr)}`;
        const { kind, names } = queryMetricNames(q, catalog);
        if (names.length === 0) problems.push(`${where}: names no metric`);
        for (const name of names) {
            const found = kind === "pcp" ? known.pcp.has(name) : known.prometheus.has(name);
            if (!found) problems.push(`${where}: ${kind === "pcp" ? "PCP metric" : "series"} ${name} is served by neither pmcd/pmproxy nor node_exporter`);
        }
        if (kind !== "prometheus") continue;
        for (const sel of equalitySelectors(q.expr)) {
            const seen = known.prometheus.get(sel.name);
            if (seen === undefined) continue;
            const match = seen.some((labels) => Object.entries(sel.labels).every(([k, v]) => labels[k] === v));
            if (!match) problems.push(`${where}: no ${sel.name} series has ${JSON.stringify(sel.labels)}`);
        }
    }
    return problems;
}
