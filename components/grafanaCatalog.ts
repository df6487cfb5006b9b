/**
 * The Grafana catalog (nix/grafana/catalog.json), typed: the datasources and
 * dashboards the grafana VM provisions. Nix renders Grafana's files from it
 * (nix/grafana/render.nix); the stack reads it for the dashboard URLs and the
 * tests for the metric names every dashboard queries. Nothing here restates a
 * uid.
 */
import catalogJson from "../nix/grafana/catalog.json";

export type DatasourceKey = keyof typeof catalogJson.datasources;

export interface CatalogDatasource {
    name: string;
    uid: string;
    type: string;
    /** The service in nix/constants.json `ports` whose loopback port the datasource reads. */
    service: string;
    /**
     * How verify checks it through Grafana: "health-api" (a backend plugin:
     * /api/datasources/uid/<uid>/health) or "pmapi-proxy" (a browser-side
     * plugin such as Vector: PMWEBAPI calls through Grafana's datasource proxy).
     */
    check: "health-api" | "pmapi-proxy";
    isDefault?: boolean;
    jsonData?: Record<string, string>;
}

export interface CatalogTarget {
    datasource: string;
    expr: string;
    legend: string;
}

export interface CatalogPanel {
    title: string;
    unit: string;
    targets: CatalogTarget[];
}

export interface CatalogDashboard {
    title: string;
    /** "app": shipped in the grafana-pcp release at `path`; "pcp-eval": rendered from `rows`. */
    from: "app" | "pcp-eval";
    path?: string;
    refresh?: string;
    timeFrom?: string;
    rows?: Array<{ title: string; panels: CatalogPanel[] }>;
}

export interface GrafanaCatalog {
    plugin: { id: string; version: string };
    datasources: Record<string, CatalogDatasource>;
    dashboards: Record<string, CatalogDashboard>;
}

export const grafanaCatalog: GrafanaCatalog = catalogJson as GrafanaCatalog;

/** A direct URL per provisioned dashboard, keyed by its uid (Grafana's /d/<uid>). */
export function dashboardUrls(grafanaUrl: string, catalog: GrafanaCatalog = grafanaCatalog): Record<string, string> {
    const base = grafanaUrl.replace(/\/+$/, "");
    return Object.fromEntries(Object.keys(catalog.dashboards).map((uid) => [uid, `${base}/d/${encodeURIComponent(uid)}`]));
}

/** One query of one panel, with the datasource it goes to. */
export interface DashboardQuery {
    dashboard: string;
    panel: string;
    datasource: string;
    expr: string;
}

/** Every query of the dashboards rendered from the catalog (the app's own are upstream's). */
export function dashboardQueries(catalog: GrafanaCatalog = grafanaCatalog): DashboardQuery[] {
    const out: DashboardQuery[] = [];
    for (const [uid, d] of Object.entries(catalog.dashboards)) {
        for (const row of d.rows ?? []) {
            for (const panel of row.panels) {
                for (const t of panel.targets) out.push({ dashboard: uid, panel: panel.title, datasource: t.datasource, expr: t.expr });
            }
        }
    }
    return out;
}

/**
 * PCP metric names in a Vector or Valkey (pmseries) query: dotted names, with
 * any {label filters} and quoted strings left out.
 */
export function pcpMetricNames(expr: string): string[] {
    const bare = expr.replace(/"(?:[^"\\]|\\.)*"/g, "").replace(/\{[^}]*\}/g, "");
    return [...new Set(bare.match(/\b[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)+\b/g) ?? [])];
}

const promqlWords = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless", "inf", "nan"]);

/**
 * Metric names in a PromQL expression: identifiers that are not functions,
 * keywords, label matchers ({...}), ranges ([...]) or strings.
 */
export function promqlMetricNames(expr: string): string[] {
    const bare = expr
        .replace(/"(?:[^"\\]|\\.)*"/g, "")
        .replace(/\{[^}]*\}/g, " ")
        .replace(/\[[^\]]*\]/g, " ")
        // by (...) / without (...) list label names, not metrics.
        .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
    const names = new Set<string>();
    for (const m of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
        const word = m[0];
        const after = bare.slice(m.index! + word.length).trimStart();
        if (after.startsWith("(")) continue; // a function
        if (promqlWords.has(word.toLowerCase())) continue;
        const before = m.index! > 0 ? bare[m.index! - 1] : "";
        if (/[0-9.]/.test(before)) continue; // part of a number such as 1e3
        names.add(word);
    }
    return [...names];
}

/** Metric names a query needs, by the kind of datasource it goes to. */
export function queryMetricNames(q: DashboardQuery, catalog: GrafanaCatalog = grafanaCatalog): { kind: "pcp" | "prometheus"; names: string[] } {
    const ds = catalog.datasources[q.datasource];
    if (ds === undefined) throw new Error(`dashboard ${q.dashboard} panel "${q.panel}": datasource "${q.datasource}" is not in nix/grafana/catalog.json`);
    return ds.type === "prometheus" ? { kind: "prometheus", names: promqlMetricNames(q.expr) } : { kind: "pcp", names: pcpMetricNames(q.expr) };
}
