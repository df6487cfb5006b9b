/**
 * A small HTTP stand-in for Grafana's API, for the shape of verify's Grafana
 * checks: no Grafana can run on these machines (Debian ships none). It answers
 * what verify calls, the way Grafana does:
 *   GET /api/health                                   (no login)
 *   GET /api/datasources/uid/<uid>/health             backend datasources of the catalog
 *   GET /api/datasources/proxy/uid/<uid>/<path>       forwarded to the datasource's URL
 * Everything but /api/health needs the admin login (HTTP basic auth). The
 * datasource proxy forwards to a REAL pmproxy, so a query through "PCP Vector"
 * reaches real PCP.
 */
import * as http from "node:http";
import { type GrafanaCatalog, grafanaCatalog } from "../../components/grafanaCatalog";
import { type LocalServer, startHttpServer } from "./pcp";

export interface GrafanaStandIn extends LocalServer {
    /** Method and path of every request, in order. */
    requests: string[];
}

export interface GrafanaStandInOptions {
    password: string;
    /** Where datasources of service "pmproxy" point (a real pmproxy). */
    pmproxyUrl: string;
    catalog?: GrafanaCatalog;
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
}

export function startGrafanaStandIn(opts: GrafanaStandInOptions): Promise<GrafanaStandIn> {
    const catalog = opts.catalog ?? grafanaCatalog;
    const byUid = new Map(Object.values(catalog.datasources).map((ds) => [ds.uid, ds]));
    const expected = `Basic ${Buffer.from(`admin:${opts.password}`).toString("base64")}`;
    const requests: string[] = [];
    return startHttpServer((req, res) => {
        const url = req.url ?? "/";
        requests.push(`${req.method} ${url}`);
        if (url === "/api/health") return json(res, 200, { commit: "stand-in", database: "ok", version: "stand-in" });
        if (req.headers.authorization !== expected) return json(res, 401, { message: "Unauthorized" });
        const health = /^\/api\/datasources\/uid\/([^/]+)\/health$/.exec(url);
        if (health) {
            const ds = byUid.get(decodeURIComponent(health[1]));
            if (ds === undefined) return json(res, 404, { message: "Data source not found" });
            // Browser-side plugins (Vector) have no backend, so Grafana has no health check to run.
            if (ds.check !== "health-api") return json(res, 404, { message: "Plugin health check not implemented" });
            return json(res, 200, { status: "OK", message: `stand-in: ${ds.name} is working` });
        }
        const proxy = /^\/api\/datasources\/proxy\/uid\/([^/]+)(\/.*)$/.exec(url);
        if (proxy) {
            const ds = byUid.get(decodeURIComponent(proxy[1]));
            if (ds === undefined) return json(res, 404, { message: "Data source not found" });
            if (ds.service !== "pmproxy") return json(res, 502, { message: `stand-in proxies only pmproxy datasources, not ${ds.service}` });
            http.get(`${opts.pmproxyUrl}${proxy[2]}`, (up) => {
                res.writeHead(up.statusCode ?? 502, { "content-type": String(up.headers["content-type"] ?? "application/json") });
                up.pipe(res);
            }).on("error", (err) => json(res, 502, { message: `bad gateway: ${err.message}` }));
            return;
        }
        json(res, 404, { message: "Not found" });
    }).then((server) => ({ ...server, requests }));
}
