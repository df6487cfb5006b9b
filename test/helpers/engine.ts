/**
 * The real Pulumi engine on a throw-away copy of this project, inside a
 * network namespace of its own. Used by test/e2e/engine.test.ts and
 * bench/engine.ts.
 *
 * - The CLI, the Node.js language host and the dynamic-provider launcher come
 *   from tools/build.sh (built from Go modules, cached); they are put first on
 *   PATH; pcp-eval's own provider plugin is built in the checkout's
 *   provider/bin (provider/build.sh, cached) and copied with the project; with PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true so nothing is
 *   downloaded (inside the namespace nothing could be).
 * - The project is copied to a temporary directory (node_modules linked), so
 *   `pulumi stack init` (it writes the stack's encryption salt into
 *   Pulumi.<stack>.yaml), `pulumi config set`, the file-backend state
 *   (Pulumi.yaml's ./.pulumi-state) and the stack's host state
 *   (.pcp-eval-state/) all stay out of the checkout.
 * - Every pulumi command runs as `ip netns exec <ns> pulumi ...`: the bridge,
 *   TAP devices, nftables table and the VMs' forwarded ports exist only in
 *   that namespace. `dispose` ends what is left in it (by PID: every process
 *   there was started by this harness), deletes it, and removes the copy.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ensureProviderPlugin } from "../../components/providerPlugin";
import { buildFixture } from "../fixtures/vm/fixture";
import { offlineNixConfig } from "./nix";
import { Netns } from "./netns";

export const repoRoot = path.resolve(__dirname, "..", "..");
export const stackName = "ci";

/** What the engine test copies: the program, its scripts and the stacks' fixtures. */
const projectEntries = [
    "Pulumi.yaml",
    `Pulumi.${stackName}.yaml`,
    "Pulumi.k8s.yaml",
    "index.ts",
    "package.json",
    "tsconfig.json",
    "components",
    "manifests",
    "provider",
    "host",
    "verify",
    "nix",
    "test/fixtures/ci-flake",
    "test/fixtures/vm",
];

export interface ToolsBuild {
    binDir: string;
    pulumi: string;
    languageHostNodejs: string;
}

/** The engine's bin dir: $PCP_EVAL_TOOLS_BIN (scripts/test.sh sets it), else tools/build.sh (seconds when cached). */
export function engineTools(): ToolsBuild {
    const fromEnv = process.env.PCP_EVAL_TOOLS_BIN;
    const r = spawnSync("bash", [path.join(repoRoot, "tools", "build.sh"), ...(fromEnv ? ["--print"] : [])], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "inherit"],
        maxBuffer: 1024 * 1024,
    });
    if (r.status !== 0) throw new Error(`tools/build.sh failed (status ${r.status})`);
    const build = JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as ToolsBuild;
    if (fromEnv && path.resolve(fromEnv) !== path.resolve(build.binDir)) {
        throw new Error(`PCP_EVAL_TOOLS_BIN=${fromEnv} is not the current tools build ${build.binDir}; rerun tools/build.sh`);
    }
    return build;
}

export interface PulumiResult {
    status: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
    ms: number;
}

/** `pulumi <op> --json`, as far as the tests read it. */
export interface EngineStep {
    op: string;
    urn: string;
    /** A preview's reasons for a replace (the inputs that force it). */
    replaceReasons?: string[];
    /** A preview's inputs before and after the step. */
    oldInputs?: Record<string, unknown>;
    newInputs?: Record<string, unknown>;
}

export interface EngineJson {
    /** The operation's steps: "create", "same", "delete", "refresh", ... per URN. */
    steps: EngineStep[];
    /** Step counts by op. */
    changeSummary: Record<string, number>;
}

interface EngineEvent {
    resourcePreEvent?: { metadata: { op: string; urn: string } };
    summaryEvent?: { resourceChanges: Record<string, number>; result?: string };
}

/**
 * Parses `--json` output: a preview prints one JSON document; an update
 * (`up`, `destroy`, `refresh` without --preview-only) prints the preview's
 * document and then its engine events, one JSON object per line. For an
 * update the steps and counts are those of the events (what was done).
 */
export function parseEngineJson(stdout: string): EngineJson {
    const text = stdout.trim();
    const end = text.indexOf("\n}\n");
    const first = end < 0 ? text : text.slice(0, end + 2);
    type PreviewStep = { op: string; urn: string; replaceReasons?: string[]; oldState?: { inputs?: Record<string, unknown> }; newState?: { inputs?: Record<string, unknown> } };
    const doc = JSON.parse(first) as { steps?: PreviewStep[]; changeSummary?: Record<string, number> };
    const events = (end < 0 ? "" : text.slice(end + 3))
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as EngineEvent);
    if (events.length === 0) {
        const steps = (doc.steps ?? []).map((s) => ({
            op: s.op,
            urn: s.urn,
            ...(s.replaceReasons ? { replaceReasons: s.replaceReasons } : {}),
            ...(s.oldState?.inputs ? { oldInputs: s.oldState.inputs } : {}),
            ...(s.newState?.inputs ? { newInputs: s.newState.inputs } : {}),
        }));
        return { steps, changeSummary: doc.changeSummary ?? {} };
    }
    const summary = events.find((e) => e.summaryEvent)?.summaryEvent;
    if (!summary) throw new Error("the engine's events have no summary event");
    return {
        steps: events.filter((e) => e.resourcePreEvent).map((e) => ({ op: e.resourcePreEvent!.metadata.op, urn: e.resourcePreEvent!.metadata.urn })),
        changeSummary: summary.resourceChanges,
    };
}

export interface EngineOptions {
    /** The stack the project's helpers (outputs, state, vmStatus) use; default "ci". */
    stack?: string;
    /** Directories put on PATH after the engine's (e.g. the kubernetes provider plugin, kubectl). */
    extraPath?: string[];
    /** The PCP fixture image (test/fixtures/pcp-image) the ci flake's pcp-container copies. */
    pcpImage?: { tarball: string; hash: string };
    /** Where the project is copied from; default this checkout (the migration test starts from an older main). */
    sourceRoot?: string;
}

/** Copies the project's entries from source into project; an entry the source lacks is skipped. */
function copyProject(source: string, project: string, skip: (entry: string) => boolean = () => false): void {
    for (const entry of projectEntries) {
        if (skip(entry) || !fs.existsSync(path.join(source, entry))) continue;
        fs.rmSync(path.join(project, entry), { recursive: true, force: true });
        fs.cpSync(path.join(source, entry), path.join(project, entry), {
            recursive: true,
            filter: (src) => !src.endsWith(".test.ts"),
        });
    }
}

export class EngineProject {
    readonly dir: string;
    readonly stack: string;
    readonly ns: Netns;
    readonly env: Record<string, string>;
    /** The copy's directory under dir (moveProject changes it). */
    private projectName = "project";
    private readonly running = new Set<ChildProcess>();

    private constructor(dir: string, ns: Netns, env: Record<string, string>, stack: string) {
        this.dir = dir;
        this.ns = ns;
        this.env = env;
        this.stack = stack;
    }

    get projectDir(): string {
        return path.join(this.dir, this.projectName);
    }

    /** The stack's host state (.pcp-eval-state/<stack>) inside the copy. */
    get stateDir(): string {
        return path.join(this.projectDir, ".pcp-eval-state", this.stack);
    }

    /**
     * Moves the copy, with its host state, to the sibling directory `name`, as
     * a user moves a checkout; later commands run there.
     */
    moveProject(name: string): void {
        const to = path.join(this.dir, name);
        fs.renameSync(this.projectDir, to);
        this.projectName = name;
        this.env.PCP_EVAL_REPO = to;
    }

    /** Copies the project, creates the namespace (loopback up) and the stack. */
    static async create(tools: ToolsBuild, prefix = "pe9", options: EngineOptions = {}): Promise<EngineProject> {
        // The fixture VM's kernel comes from Debian's archive on first use; fetch
        // it here, since the runners are built inside the namespace (no network).
        await buildFixture();
        // The plugin the host resources need, built in the checkout (cached) and copied with it:
        // the copy's program then finds it current instead of building it inside the namespace.
        ensureProviderPlugin(repoRoot);
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-engine-`));
        const project = path.join(dir, "project");
        copyProject(options.sourceRoot ?? repoRoot, project);
        fs.symlinkSync(path.join(repoRoot, "node_modules"), path.join(project, "node_modules"));
        if (options.pcpImage) {
            fs.writeFileSync(path.join(project, "test", "fixtures", "ci-flake", "pcp-image.json"), JSON.stringify(options.pcpImage));
        }
        fs.mkdirSync(path.join(dir, "home"));
        fs.mkdirSync(path.join(dir, "tmp"));
        const env: Record<string, string> = {
            PATH: [tools.binDir, ...(options.extraPath ?? []), process.env.PATH ?? "/usr/bin:/bin"].join(":"),
            PULUMI_HOME: path.join(dir, "home"),
            // What the CLI, the language host and the plugins leave in the temp dir goes with the copy at dispose:
            // the kubernetes provider writes a copy of a configured kubeconfig there on every engine pass and
            // never removes it (pulumi-kubernetes' writeKubeconfigToFile, for Helm).
            TMPDIR: path.join(dir, "tmp"),
            // Overrides Pulumi.yaml's ./.pulumi-state, which `pulumi login` would not.
            PULUMI_BACKEND_URL: `file://${path.join(dir, "state")}`,
            PULUMI_CONFIG_PASSPHRASE: `pe9-${process.pid}`,
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
            PULUMI_SKIP_UPDATE_CHECK: "true",
            // tsc --noEmit checks the program's types before the tests; the engine only transpiles.
            PULUMI_NODEJS_TRANSPILE_ONLY: "true",
            NIX_CONFIG: offlineNixConfig,
            // The ci fixture flake reads nix/constants.json and test/fixtures/vm from here.
            PCP_EVAL_REPO: project,
        };
        fs.mkdirSync(path.join(dir, "state"));
        let ns: Netns;
        try {
            ns = Netns.create(prefix);
        } catch (e) {
            fs.rmSync(dir, { recursive: true, force: true });
            throw e;
        }
        const p = new EngineProject(dir, ns, env, options.stack ?? stackName);
        const login = await p.pulumi(["login", env.PULUMI_BACKEND_URL!]);
        if (login.status !== 0) {
            await p.dispose();
            throw new Error(`pulumi login failed: ${login.stderr}`);
        }
        return p;
    }

    private argv(args: string[]): string[] {
        return ["netns", "exec", this.ns.name, "pulumi", "--cwd", this.projectDir, "--non-interactive", ...args];
    }

    private spawnPulumi(args: string[], detached: boolean): ChildProcess {
        const child = spawn("ip", this.argv(args), {
            env: { ...process.env, ...this.env },
            stdio: ["ignore", "pipe", "pipe"],
            detached,
        });
        this.running.add(child);
        child.on("close", () => this.running.delete(child));
        return child;
    }

    /** Runs `pulumi ARGS` in the namespace to completion; never throws on a non-zero exit. */
    pulumi(args: string[], timeoutMs = 15 * 60_000): Promise<PulumiResult> {
        const started = Date.now();
        const child = this.spawnPulumi(args, false);
        let stdout = "";
        let stderr = "";
        child.stdout?.setEncoding("utf8").on("data", (d: string) => (stdout += d));
        child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr += d));
        const guard = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
        return new Promise((resolve, reject) => {
            child.on("error", reject);
            child.on("close", (status, signal) => {
                clearTimeout(guard);
                resolve({ status, signal, stdout, stderr, ms: Date.now() - started });
            });
        });
    }

    /** Runs `pulumi ARGS`, throwing with its output when it fails. */
    async pulumiOk(args: string[]): Promise<PulumiResult> {
        const r = await this.pulumi(args);
        if (r.status !== 0) {
            // With --json the errors are diagnostic events among many; show those.
            const errors = r.stdout
                .split("\n")
                .filter((l) => l.includes('"severity":"error"'))
                .map((l) => {
                    try {
                        return (JSON.parse(l) as { diagnosticEvent?: { message?: string } }).diagnosticEvent?.message ?? l;
                    } catch {
                        return l;
                    }
                });
            const detail = errors.length > 0 ? errors.join("\n").slice(-8000) : r.stdout.slice(-6000);
            throw new Error(`pulumi ${args.join(" ")} failed (status ${r.status}, signal ${r.signal}):\n${detail}\n${r.stderr.slice(-4000)}`);
        }
        return r;
    }

    /** Runs `pulumi ARGS --json` and parses its JSON document. */
    async pulumiJson(args: string[]): Promise<{ result: PulumiResult; json: EngineJson }> {
        const result = await this.pulumiOk([...args, "--json"]);
        return { result, json: parseEngineJson(result.stdout) };
    }

    /**
     * Starts `pulumi ARGS` in a process group of its own and returns a handle
     * that kills the whole group with SIGKILL: the CLI, its language host and
     * plugins and the scripts they run die at once, as on a lost terminal.
     * Detached VMs (their own sessions) live on.
     */
    startPulumi(args: string[]): { pid: number; output(): string; exited(): boolean; killGroup(): Promise<void> } {
        const child = this.spawnPulumi(args, true);
        let out = "";
        let exited = false;
        child.stdout?.setEncoding("utf8").on("data", (d: string) => (out += d));
        child.stderr?.setEncoding("utf8").on("data", (d: string) => (out += d));
        const closed = new Promise<void>((resolve) =>
            child.on("close", () => {
                exited = true;
                resolve();
            }),
        );
        if (child.pid === undefined) throw new Error(`pulumi ${args.join(" ")} did not start`);
        const pid = child.pid;
        return {
            pid,
            output: () => out,
            exited: () => exited,
            killGroup: async () => {
                try {
                    process.kill(-pid, "SIGKILL");
                } catch {
                    // already gone
                }
                await closed;
            },
        };
    }

    /**
     * Replaces the copy's code with this checkout's, as a `git pull` would,
     * keeping the stack's config file (it holds the stack's encryption salt).
     */
    upgradeToCheckout(): void {
        copyProject(repoRoot, this.projectDir, (entry) => entry === `Pulumi.${this.stack}.yaml`);
    }

    /** Puts the checkout's Pulumi.<stack>.yaml back (`pulumi stack rm` deletes the copy's). */
    restoreStackConfig(): void {
        const file = `Pulumi.${this.stack}.yaml`;
        fs.copyFileSync(path.join(repoRoot, file), path.join(this.projectDir, file));
    }

    /** Stack outputs as JSON. */
    async outputs(): Promise<Record<string, unknown>> {
        const r = await this.pulumiOk(["stack", "output", "--stack", this.stack, "--json", "--show-secrets"]);
        return JSON.parse(r.stdout) as Record<string, unknown>;
    }

    /** The stack's checkpoint (`pulumi stack export`). */
    async exportState(): Promise<{ deployment?: { resources?: Array<{ urn: string; type: string; id?: string }>; pending_operations?: unknown[] } }> {
        const r = await this.pulumiOk(["stack", "export", "--stack", this.stack]);
        return JSON.parse(r.stdout) as { deployment?: { resources?: Array<{ urn: string; type: string; id?: string }>; pending_operations?: unknown[] } };
    }

    /**
     * PIDs of the processes in the namespace, with their command lines and
     * session IDs (a VM runner leads a session of its own; the CLI started by
     * startPulumi leads the session of its plugins and the scripts they run).
     */
    processes(): Array<{ pid: number; args: string; sid: number }> {
        const r = spawnSync("ip", ["netns", "pids", this.ns.name], { encoding: "utf8" });
        return r.stdout
            .split("\n")
            .filter((l) => /^\d+$/.test(l.trim()))
            .map((l) => {
                const pid = Number(l.trim());
                let args = "";
                let sid = 0;
                try {
                    args = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
                    // Fields after the parenthesised command: state ppid pgrp session ...
                    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
                    sid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[3]);
                } catch {
                    // exited meanwhile
                }
                return { pid, args, sid };
            })
            .filter((p) => p.args !== "");
    }

    /** `vm.sh status` of one VM of the stack. */
    vmStatus(name: string): { running: boolean; pid?: number } {
        const r = spawnSync("bash", [path.join(this.projectDir, "host", "vm.sh"), "status", "--name", name, "--state-dir", path.join(this.stateDir, "vms")], {
            encoding: "utf8",
        });
        if (r.status !== 0) throw new Error(`vm.sh status ${name} failed: ${r.stderr}`);
        return JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as { running: boolean; pid?: number };
    }

    /** An HTTP GET from inside the namespace: the status code (0 when nothing answered). */
    httpStatus(url: string): number {
        const r = this.ns.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url]);
        return Number.parseInt(r.stdout.trim(), 10) || 0;
    }

    /** Symlinks (Nix out-links) left under the stack's state dir. */
    outLinks(): string[] {
        const found: string[] = [];
        const walk = (d: string): void => {
            if (!fs.existsSync(d)) return;
            for (const e of fs.readdirSync(d, { withFileTypes: true })) {
                const p = path.join(d, e.name);
                if (e.isSymbolicLink()) found.push(p);
                else if (e.isDirectory()) walk(p);
            }
        };
        walk(this.stateDir);
        return found;
    }

    /** nftables tables in the namespace. */
    nftTables(): string[] {
        return this.ns
            .runOk("nft", ["list", "tables"])
            .split("\n")
            .map((l) => l.trim())
            .filter((l) => l !== "");
    }

    /** Ends every process left in the namespace (all started here), deletes it, removes the copy. */
    async dispose(): Promise<void> {
        for (const child of this.running) {
            if (child.pid !== undefined) {
                try {
                    process.kill(child.pid, "SIGKILL");
                } catch {
                    // already gone
                }
            }
        }
        for (let round = 0; round < 50; round++) {
            const left = this.processes();
            if (left.length === 0) break;
            for (const p of left) {
                try {
                    process.kill(p.pid, round < 10 ? "SIGTERM" : "SIGKILL");
                } catch {
                    // already gone
                }
            }
            await new Promise((resolve) => setTimeout(resolve, 200));
        }
        this.ns.destroy();
        fs.rmSync(this.dir, { recursive: true, force: true });
    }
}
