/**
 * What the rebuild decision costs, for the two ways to make it:
 *
 *   source   hash every file of the flake's source as Nix copies it (a
 *            path: flake: every file of the directory, whatever its name)
 *   eval     the store paths Nix would build: one read-only `nix eval` of
 *            the image and every runner (components/nixEval.ts, the choice)
 *
 * The program runs once per `pulumi preview` and twice per `pulumi up` (its
 * preview, then the update), so each figure counts once on preview and twice
 * on up. Also measured, what a wrong "rebuild" costs the source hash when an
 * edit Nix ignores (a README in the flake) changes it: a `nix-build.sh build`
 * of a path that already exists, per NixBuild.
 *
 * On the ci stack's fixture flake (test/fixtures/ci-flake, two runners) and
 * on nix/ (hashing only: its evaluation needs nixpkgs, absent offline).
 * With --engine (root; like the e2e test, in a namespace of its own) also the
 * real engine on the ci stack after one `up`: a no-change `pulumi preview`
 * and `pulumi up`, whose program evaluates both runners each time.
 *
 *   node --import tsx bench/fingerprint.ts [--runs N] [--engine]
 *
 * Prints one line per measure, then one JSON line of medians (ms).
 */
import * as crypto from "node:crypto";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { evaluateStorePaths, flakeOutputExpression } from "../components/nixEval";
import { EngineProject, engineTools, stackName } from "../test/helpers/engine";
import { offlineNixConfig } from "../test/helpers/nix";
import { median as exactMedian } from "./stats";

/** To a tenth of a millisecond. */
const median = (values: number[]): number => Math.round(exactMedian(values) * 10) / 10;

const repoRoot = path.resolve(__dirname, "..");

function parseArgs(argv: string[]): { runs: number; engine: boolean } {
    const i = argv.indexOf("--runs");
    const runs = i < 0 ? 7 : Number(argv[i + 1]);
    if (!Number.isInteger(runs) || runs < 1) {
        console.error(`bench/fingerprint.ts: --runs needs a positive whole number, got '${argv[i + 1] ?? ""}'`);
        process.exit(2);
    }
    return { runs, engine: argv.includes("--engine") };
}

/** The alternative measured: every file under a path: flake's directory, as Nix copies it. */
function sourceHash(dir: string): string {
    const hash = crypto.createHash("sha256");
    const walk = (d: string): void => {
        for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
            const p = path.join(d, e.name);
            hash.update(`${path.relative(dir, p)}\0`);
            if (e.isSymbolicLink()) hash.update(`-> ${fs.readlinkSync(p)}\0`);
            else if (e.isDirectory()) walk(p);
            else hash.update(fs.readFileSync(p));
        }
    };
    walk(dir);
    return hash.digest("hex");
}

async function timed(f: () => unknown): Promise<number> {
    const t = process.hrtime.bigint();
    await f();
    return Number(process.hrtime.bigint() - t) / 1e6;
}

async function sample(runs: number, f: () => unknown): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < runs; i++) out.push(await timed(f));
    return out;
}

/** A copy of the ci stack's flake layout (nix/constants.json, test/fixtures/{ci-flake,vm}); a new flake source for Nix each time. */
function ciCopy(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe19-bench-"));
    for (const entry of ["nix/constants.json", "test/fixtures/ci-flake", "test/fixtures/vm"]) {
        fs.cpSync(path.join(repoRoot, entry), path.join(dir, entry), { recursive: true });
    }
    // A fresh flake source, as after an edit: Nix copies it into its store again.
    fs.writeFileSync(path.join(dir, "test/fixtures/ci-flake/nonce"), crypto.randomUUID());
    return dir;
}

function ciRunners(dir: string): Record<string, string> {
    const flake = path.join(dir, "test/fixtures/ci-flake");
    const runner = (name: string, networking: string) =>
        `(builtins.getFlake "path:${flake}").lib.x86_64-linux.mkMicrovmRunner { variant = "base"; name = "${name}"; networking = "${networking}"; }`;
    return { "vm-base": runner("base", "user"), "vm-eval": runner("eval", "user") };
}

async function main(): Promise<void> {
    const { runs, engine } = parseArgs(process.argv.slice(2));
    process.env.NIX_CONFIG = offlineNixConfig;
    const figures: Record<string, number> = {};
    const report = (key: string, what: string, values: number[]): void => {
        figures[key] = median(values);
        console.log(`${what}: median ${figures[key]} ms of ${values.length} (min ${median([Math.min(...values)])}, max ${median([Math.max(...values)])})`);
    };

    report("sourceHashCiFlake", "source hash, ci fixture flake", await sample(runs, () => sourceHash(path.join(repoRoot, "test/fixtures/ci-flake"))));
    report("sourceHashNix", "source hash, nix/ (the real flake)", await sample(runs, () => sourceHash(path.join(repoRoot, "nix"))));

    const copies: string[] = [];
    try {
        const cold: number[] = [];
        const warm: number[] = [];
        for (let i = 0; i < runs; i++) {
            const dir = ciCopy();
            copies.push(dir);
            process.env.PCP_EVAL_REPO = dir;
            cold.push(await timed(() => evaluateStorePaths(ciRunners(dir), dir)));
            warm.push(await timed(() => evaluateStorePaths(ciRunners(dir), dir)));
        }
        report("evalCiColdSource", "eval, ci flake, 2 runners, flake source new to the store", cold);
        report("evalCiWarm", "eval, ci flake, 2 runners, unchanged flake", warm);

        // The source hash's cost of a wrong rebuild: a build whose result exists.
        const minimal = fs.mkdtempSync(path.join(os.tmpdir(), "pe19-bench-min-"));
        copies.push(minimal);
        fs.cpSync(path.join(repoRoot, "test/fixtures/flake-minimal"), minimal, { recursive: true });
        const build = () =>
            execFileSync("bash", [path.join(repoRoot, "host/nix-build.sh"), "build", "--out-link", path.join(minimal, "result"), "--installable", `path:${minimal}#hello`], {
                stdio: ["ignore", "pipe", "ignore"],
            });
        build();
        report("noopBuild", "nix-build.sh build of a path already built (per NixBuild)", await sample(runs, build));
        const planned = await evaluateStorePaths({ hello: flakeOutputExpression(minimal, "packages.x86_64-linux.hello") }, minimal);
        const built = JSON.parse(build().toString().trim().split("\n").pop()!) as { storePath: string };
        if (built.storePath !== planned.hello) throw new Error(`evaluated ${planned.hello} but built ${built.storePath}`);
    } finally {
        delete process.env.PCP_EVAL_REPO;
        for (const d of copies) fs.rmSync(d, { recursive: true, force: true });
    }

    if (engine) {
        const p = await EngineProject.create(engineTools(), "pe19");
        try {
            await p.pulumiOk(["stack", "init", stackName]);
            await p.pulumiOk(["up", "--yes", "--stack", stackName]);
            report("enginePreviewNoChange", "engine: pulumi preview, no change (ci stack, 2 runners evaluated)", (await sampleEngine(p, runs, ["preview", "--expect-no-changes"])));
            report("engineUpNoChange", "engine: pulumi up, no change (program runs twice)", (await sampleEngine(p, runs, ["up", "--yes", "--expect-no-changes"])));
            await p.pulumiOk(["destroy", "--yes", "--stack", stackName]);
            await p.pulumiOk(["stack", "rm", "--yes", stackName]);
        } finally {
            await p.dispose();
        }
    }
    console.log(JSON.stringify({ bench: "fingerprint", runs, medianMs: figures }));
}

async function sampleEngine(p: EngineProject, runs: number, args: string[]): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < runs; i++) out.push((await p.pulumiOk([...args, "--stack", stackName])).ms);
    return out;
}

main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
});
