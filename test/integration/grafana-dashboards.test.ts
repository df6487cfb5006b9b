/**
 * Every metric a provisioned dashboard queries exists, read from the real
 * daemons: PCP names from Debian's pmcd through pmproxy's /pmapi/metric, the
 * Prometheus spellings from pmproxy's /metrics, node_exporter's series from
 * Debian's prometheus-node-exporter (test/helpers/pcp.ts starts all three on
 * loopback). A dashboard naming a metric none of them serves fails here.
 * The queries are the catalog's, which test/unit/grafana-catalog.test.ts proves
 * are exactly what render.nix gives Grafana.
 */
import assert from "node:assert/strict";
import { test, type TestContext } from "node:test";
import { dashboardQueries, grafanaCatalog, pcpMetricNames, queryMetricNames } from "../../components/grafanaCatalog";
import { httpGet, joinUrl } from "../../verify/net";
import { pmapiAllMetricNames } from "../../verify/pmapi";
import { exposedSeries, missingMetrics } from "../helpers/dashboards";
import { nodeExporterBinary, pcpNeeds, startNodeExporter, startPcp } from "../helpers/pcp";
import { requireTools } from "../helpers/tools";

const timeoutMs = 30_000;

async function scrape(baseUrl: string): Promise<string> {
    const url = joinUrl(baseUrl, "/metrics");
    const res = await httpGet(url, timeoutMs);
    assert.equal(res.status, 200, `GET ${url}: HTTP ${res.status}`);
    return res.body;
}

test("every metric the provisioned dashboards query is served by the real pmcd, pmproxy or node_exporter", async (t: TestContext) => {
    if (!requireTools(t, [...pcpNeeds, nodeExporterBinary])) return;
    const pcp = await startPcp();
    const nodeExporter = await startNodeExporter().catch(async (err: unknown) => {
        await pcp.stop();
        throw err;
    });
    try {
        const pcpNames = new Set(await pmapiAllMetricNames(pcp.pmproxyUrl, timeoutMs));
        // Only the names the dashboards use go through /metrics: pmproxy renders each one it is asked for.
        const wantedPcp = [...new Set(dashboardQueries().flatMap((q) => (queryMetricNames(q).kind === "pcp" ? queryMetricNames(q).names : [])))];
        const pmproxySeries = exposedSeries(await scrape(`${pcp.pmproxyUrl}`));
        const nodeSeries = exposedSeries(await scrape(nodeExporter.url));
        const prometheus = new Map([...pmproxySeries, ...nodeSeries]);

        const queries = dashboardQueries();
        t.diagnostic(`${queries.length} queries checked against ${pcpNames.size} PCP names, ${pmproxySeries.size} pmproxy /metrics and ${nodeSeries.size} node_exporter series`);
        assert.ok(queries.length >= 10, `${queries.length} queries in the catalog's dashboards`);
        assert.deepEqual(missingMetrics(queries, { pcp: pcpNames, prometheus }), [], "every dashboard metric exists");

        // The PCP-through-Prometheus panels use pmproxy's spelling of real PCP names.
        for (const q of queries.filter((x) => grafanaCatalog.datasources[x.datasource].type === "prometheus")) {
            for (const name of queryMetricNames(q).names.filter((n) => !n.startsWith("node_"))) {
                assert.ok(pmproxySeries.has(name), `${name} comes from pmproxy's /metrics`);
                assert.ok(pcpNames.has(name.replace(/_/g, ".")), `${name} is pmproxy's spelling of a PCP name pmcd knows`);
            }
        }
        for (const name of wantedPcp) assert.ok(pcpNames.has(name), name);
        assert.ok(wantedPcp.includes("kernel.all.load"));

        await t.test("a dashboard naming a metric neither side serves fails", () => {
            const bogus = [
                { dashboard: "x", panel: "p", datasource: "vector", expr: "kernel.all.loadavg" },
                { dashboard: "x", panel: "p", datasource: "prometheus", expr: "node_load_1" },
            ];
            const problems = missingMetrics(bogus, { pcp: pcpNames, prometheus });
            assert.equal(problems.length, 2, problems.join("\n"));
            assert.match(problems[0], /PCP metric kernel\.all\.loadavg is served by neither/);
            assert.match(problems[1], /series node_load_1 is served by neither/);
            assert.deepEqual(pcpMetricNames(bogus[0].expr), ["kernel.all.loadavg"]);
        });
    } finally {
        await nodeExporter.stop();
        await pcp.stop();
    }
});
