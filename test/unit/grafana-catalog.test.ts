/**
 * The Grafana catalog (nix/grafana/catalog.json) and what Nix renders from it
 * (nix/grafana/render.nix, evaluated with the real nix-instantiate): every
 * datasource a dashboard references is provisioned, the rendered queries are
 * the catalog's, an unknown datasource key fails evaluation naming it, and the
 * query parsers find the metric names the integration test checks.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import {
    dashboardQueries,
    dashboardUrls,
    grafanaCatalog,
    pcpMetricNames,
    promqlMetricNames,
} from "../../components/grafanaCatalog";
import { equalitySelectors, missingMetrics } from "../helpers/dashboards";
import { nixEvalError, nixEvalJson, nixTools, repoRoot } from "../helpers/nix";
import { requireTools } from "../helpers/tools";

const renderNix = path.join(repoRoot, "nix", "grafana", "render.nix");

interface RenderedDatasource {
    name: string;
    uid: string;
    type: string;
    url: string;
    access: string;
    isDefault: boolean;
}
interface RenderedTarget {
    refId: string;
    datasource: { type: string; uid: string };
    expr: string;
}
interface RenderedPanel {
    id: number;
    type: string;
    title: string;
    datasource?: { type: string; uid: string };
    gridPos: { x: number; y: number; w: number; h: number };
    targets?: RenderedTarget[];
}
interface Rendered {
    datasources: RenderedDatasource[];
    dashboards: Array<{ uid: string; file: string; json: { uid: string; title: string; panels: RenderedPanel[] } }>;
}

describe("query parsers", () => {
    it("PromQL: metric names, not functions, keywords, labels, ranges or numbers", () => {
        assert.deepEqual(promqlMetricNames('sum(rate(node_cpu_seconds_total{mode="user"}[1m])) * 1000'), ["node_cpu_seconds_total"]);
        assert.deepEqual(promqlMetricNames('kernel_all_load{instname="1 minute"}'), ["kernel_all_load"]);
        assert.deepEqual(promqlMetricNames("mem_physmem * 1024 / node_memory_MemTotal_bytes"), ["mem_physmem", "node_memory_MemTotal_bytes"]);
        assert.deepEqual(promqlMetricNames("sum by (cpu, mode) (rate(node_cpu_seconds_total[5m])) > 1e3"), ["node_cpu_seconds_total"]);
        assert.deepEqual(equalitySelectors('kernel_all_load{instname="1 minute"} + node_load1'), [{ name: "kernel_all_load", labels: { instname: "1 minute" } }]);
    });

    it("PCP (Vector, pmseries): dotted names, not label filters or strings", () => {
        assert.deepEqual(pcpMetricNames("kernel.all.load"), ["kernel.all.load"]);
        assert.deepEqual(pcpMetricNames('kernel.all.load{instance.name=="1 minute"}'), ["kernel.all.load"]);
        assert.deepEqual(pcpMetricNames("mem.util.used / mem.physmem"), ["mem.util.used", "mem.physmem"]);
        assert.deepEqual(pcpMetricNames("node_load1"), []);
    });

    it("a dashboard naming a metric nobody serves, or a label no series has, is reported with where it is", () => {
        const known = {
            pcp: new Set(["kernel.all.load"]),
            prometheus: new Map([["kernel_all_load", [{ instname: "1 minute" }]], ["node_load1", [{}]]]),
        };
        const problems = missingMetrics(
            [
                { dashboard: "d", panel: "p", datasource: "vector", expr: "kernel.all.nosuch" },
                { dashboard: "d", panel: "p", datasource: "prometheus", expr: "node_nosuch_total + node_load1" },
                { dashboard: "d", panel: "p", datasource: "prometheus", expr: 'kernel_all_load{instname="2 minute"}' },
                { dashboard: "d", panel: "p", datasource: "vector", expr: "kernel.all.load" },
            ],
            known,
        );
        assert.deepEqual(problems, [
            'dashboard d, panel "p", vector query "kernel.all.nosuch": PCP metric kernel.all.nosuch is served by neither pmcd/pmproxy nor node_exporter',
            'dashboard d, panel "p", prometheus query "node_nosuch_total + node_load1": series node_nosuch_total is served by neither pmcd/pmproxy nor node_exporter',
            'dashboard d, panel "p", prometheus query "kernel_all_load{instname=\\"2 minute\\"}": no kernel_all_load series has {"instname":"2 minute"}',
        ]);
    });
});

describe("catalog", () => {
    it("gives a direct URL per dashboard, the app's Vector host overview among them", () => {
        const urls = dashboardUrls("http://grafana.test/");
        assert.equal(urls["pcp-vector-host-overview"], "http://grafana.test/d/pcp-vector-host-overview");
        assert.equal(urls["pcp-eval-pcp-vs-node"], "http://grafana.test/d/pcp-eval-pcp-vs-node");
        assert.equal(grafanaCatalog.dashboards["pcp-vector-host-overview"].from, "app");
    });

    it("the side-by-side dashboard puts PCP Vector panels beside node_exporter ones", () => {
        const queries = dashboardQueries().filter((q) => q.dashboard === "pcp-eval-pcp-vs-node");
        const panelsWithBoth = new Set(
            queries.filter((q) => q.datasource === "vector").map((q) => q.panel).filter((p) => queries.some((o) => o.panel === p && /\bnode_/.test(o.expr))),
        );
        assert.ok(panelsWithBoth.size >= 4, `PCP-live vs node_exporter panels: ${[...panelsWithBoth].join("; ")}`);
        assert.ok(queries.some((q) => q.datasource === "valkey"), "a history panel through the Valkey datasource");
    });

    it("the flake pins the grafana-pcp release whose version the catalog names", () => {
        const flake = fs.readFileSync(path.join(repoRoot, "nix", "flake.nix"), "utf8");
        const { id, version } = grafanaCatalog.plugin;
        assert.ok(
            flake.includes(`releases/download/v${version}/${id}-${version}.zip`),
            `nix/flake.nix input grafana-pcp must be the ${id} ${version} release zip (nix/grafana/catalog.json plugin)`,
        );
    });
});

describe("render.nix (real nix-instantiate)", () => {
    it("renders the provisioned datasources and dashboards; every referenced datasource uid is provisioned", async (t) => {
        if (!requireTools(t, nixTools)) return;
        const r = await nixEvalJson<Rendered>({ expr: `import ${renderNix} { }` });
        const provisioned = new Map(r.datasources.map((d) => [d.uid, d]));
        assert.deepEqual([...provisioned.keys()].sort(), Object.values(grafanaCatalog.datasources).map((d) => d.uid).sort());
        assert.equal(r.datasources.filter((d) => d.isDefault).length, 1, "one default datasource");
        for (const d of r.datasources) assert.match(d.url, /^http:\/\/127\.0\.0\.1:\d+$/, `${d.name} reads the VM's own service`);
        // Without the app (no release here) only our dashboards render.
        assert.deepEqual(r.dashboards.map((d) => d.uid), ["pcp-eval-pcp-vs-node"]);
        const rendered: Array<{ dashboard: string; panel: string; expr: string; uid: string }> = [];
        for (const d of r.dashboards) {
            assert.equal(d.json.uid, d.uid);
            assert.equal(d.file, `${d.uid}.json`);
            const ids = d.json.panels.map((p) => p.id);
            assert.equal(new Set(ids).size, ids.length, "panel ids are unique");
            for (const p of d.json.panels) {
                for (const ref of [p.datasource, ...(p.targets ?? []).map((x) => x.datasource)]) {
                    if (ref === undefined || ref.uid === "-- Mixed --") continue;
                    const ds = provisioned.get(ref.uid);
                    assert.ok(ds, `dashboard ${d.uid} panel "${p.title}" references datasource uid ${ref.uid}, which is not provisioned`);
                    assert.equal(ds.type, ref.type);
                }
                for (const x of p.targets ?? []) rendered.push({ dashboard: d.uid, panel: p.title, expr: x.expr, uid: x.datasource.uid });
            }
        }
        // What Grafana is given is exactly the catalog's queries (which the integration test checks against real daemons).
        const fromCatalog = dashboardQueries().map((q) => ({ ...q, uid: grafanaCatalog.datasources[q.datasource].uid }));
        assert.deepEqual(
            rendered,
            fromCatalog.map(({ dashboard, panel, expr, uid }) => ({ dashboard, panel, expr, uid })),
        );
    });

    it("an unknown datasource key fails evaluation naming the dashboard, the panel and the known keys", async (t) => {
        if (!requireTools(t, nixTools)) return;
        const bad = JSON.parse(JSON.stringify(grafanaCatalog)) as typeof grafanaCatalog;
        bad.dashboards["pcp-eval-pcp-vs-node"].rows![0].panels[0].targets[0].datasource = "vectr";
        const err = await nixEvalError(`import ${renderNix} { catalog = builtins.fromJSON ${JSON.stringify(JSON.stringify(bad)).replace(/\$\{/g, "\\${")}; }`);
        assert.match(err, /catalog\.json: dashboard 'pcp-eval-pcp-vs-node' panel '[^']+' names datasource 'vectr'; use one of prometheus, valkey, vector/);
    });
});
