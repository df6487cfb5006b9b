/**
 * The Go tests of the provider plugin (provider/*_test.go), run by `go test
 * -json ./...` and reported here one node subtest per Go test and subtest, in
 * Go's nesting, so the project's one `node --test` run counts them and shows
 * a failing one with its Go output. Without Go the test skips (in CI it fails:
 * test/helpers/tools.ts); a Go test that skips fails in CI the same way.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { test, type TestContext } from "node:test";
import { run } from "../helpers/run";
import { inCi, requireTools } from "../helpers/tools";

const providerDir = path.resolve(__dirname, "..", "..", "provider");

/** One line of `go test -json` (cmd/test2json). */
interface GoEvent {
    Action: "start" | "run" | "pause" | "cont" | "pass" | "bench" | "fail" | "output" | "skip" | "build-output" | "build-fail";
    Package?: string;
    ImportPath?: string;
    Test?: string;
    Elapsed?: number;
    Output?: string;
    /** On a package's "fail": the ImportPath of the build that failed, whose build-output says why. */
    FailedBuild?: string;
}

/** A package or a test, with what Go said about it. */
interface GoNode {
    /** The name node shows: the package's import path, or the test's last part. */
    name: string;
    /** The full Go name ("TestX/sub") of a test; "" for a package. */
    full: string;
    result?: "pass" | "fail" | "skip";
    output: string[];
    children: GoNode[];
}

/** Builds the tree of packages and tests from the event stream, in the order Go ran them. */
function goTestTree(events: GoEvent[]): GoNode[] {
    const packages = new Map<string, GoNode>();
    const tests = new Map<string, Map<string, GoNode>>();
    // The compiler's messages, by the ImportPath of the build ("pkg [pkg.test]").
    const builds = new Map<string, string[]>();
    const packageOf = (name: string): GoNode => {
        let p = packages.get(name);
        if (p === undefined) {
            p = { name, full: "", output: [], children: [] };
            packages.set(name, p);
            tests.set(name, new Map());
        }
        return p;
    };
    for (const e of events) {
        if (e.Action === "build-output" || e.Action === "build-fail") {
            if (e.ImportPath !== undefined && e.Output !== undefined) builds.set(e.ImportPath, [...(builds.get(e.ImportPath) ?? []), e.Output]);
            continue;
        }
        if (e.Package === undefined) continue;
        const pkg = packageOf(e.Package);
        const byName = tests.get(e.Package)!;
        if (e.Test === undefined) {
            if (e.Output !== undefined) pkg.output.push(e.Output);
            if (e.FailedBuild !== undefined) pkg.output.push(...(builds.get(e.FailedBuild) ?? []));
            if (e.Action === "pass" || e.Action === "fail" || e.Action === "skip") pkg.result = e.Action;
            continue;
        }
        let node = byName.get(e.Test);
        if (node === undefined) {
            // The parent: the longest test seen so far whose name and a "/" start this one (a name may hold a "/").
            let parent: GoNode | undefined;
            for (const [name, candidate] of byName) {
                if (e.Test.startsWith(`${name}/`) && (parent === undefined || name.length > parent.full.length)) parent = candidate;
            }
            node = { name: parent === undefined ? e.Test : e.Test.slice(parent.full.length + 1), full: e.Test, output: [], children: [] };
            byName.set(e.Test, node);
            (parent ?? pkg).children.push(node);
        }
        if (e.Output !== undefined) node.output.push(e.Output);
        if (e.Action === "pass" || e.Action === "fail" || e.Action === "skip") node.result = e.Action;
    }
    return [...packages.values()];
}

function countTests(nodes: GoNode[]): number {
    return nodes.reduce((n, node) => n + (node.full === "" ? 0 : 1) + countTests(node.children), 0);
}

/** Registers NODE as a subtest of T: passes, fails with Go's output, or skips as Go did. */
async function report(t: TestContext, node: GoNode): Promise<void> {
    await t.test(node.name, async (st) => {
        for (const child of node.children) await report(st, child);
        const output = node.output.join("");
        if (node.result === "skip") {
            const reason = /^\s+\S+\.go:\d+: (.*)$/m.exec(output)?.[1] ?? "skipped by Go";
            if (inCi) throw new Error(`CI must not skip: ${node.full} skipped: ${reason}\n${output}`);
            st.skip(reason);
            return;
        }
        // A parent that failed with a child fails as the child does (node marks it); one failing on its own says why.
        if (node.result !== "pass" && !node.children.some((c) => c.result !== "pass" && c.result !== "skip")) {
            const why = node.result === undefined ? "gave no result (did go test end early?)" : "failed";
            throw new Error(`${node.full || node.name} ${why}:\n${output}`);
        }
    });
}

test("provider/: go test ./..., each Go test a subtest", { timeout: 20 * 60_000 }, async (t) => {
    if (!requireTools(t, ["go"])) return;
    // -count=1: each run runs the tests (they run real commands, which Go's test cache does not see).
    // -mod=mod as provider/build.sh builds.
    const env = { ...process.env, GOFLAGS: `${process.env.GOFLAGS ? `${process.env.GOFLAGS} ` : ""}-mod=mod` };
    const go = await run("go", ["test", "-json", "-count=1", "-timeout=10m", "./..."], { cwd: providerDir, env, timeoutMs: 15 * 60_000 });
    const events: GoEvent[] = [];
    const notJson: string[] = [];
    for (const line of go.stdout.split("\n")) {
        if (line.trim() === "") continue;
        try {
            events.push(JSON.parse(line) as GoEvent);
        } catch {
            notJson.push(line);
        }
    }
    const packages = goTestTree(events);
    for (const pkg of packages) await report(t, pkg);
    const said = [go.stderr.trim(), ...notJson].filter((s) => s !== "").join("\n");
    assert.ok(countTests(packages) > 0, `go test ran no test (exit ${go.code}):\n${said}`);
    assert.equal(go.code, 0, `go test exited ${go.code}:\n${said}`);
});
