/**
 * The real provider plugin (provider/, pulumi-resource-pcp-eval) driven over
 * gRPC the way the engine drives it, for tests: build it (cached), start it,
 * read its port from the first stdout line, Configure once, then call
 * Check/Diff/Create/Read/Update/Delete per resource type. Its stderr (the host
 * scripts' progress lines when no engine is attached) is kept for the tests.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import * as readline from "node:readline";
import * as grpc from "@grpc/grpc-js";
import { ResourceProviderClient } from "@pulumi/pulumi/proto/provider_grpc_pb";
import {
    CheckRequest,
    type CheckResponse,
    ConfigureRequest,
    type ConfigureResponse,
    CreateRequest,
    type CreateResponse,
    DeleteRequest,
    DiffRequest,
    DiffResponse,
    ReadRequest,
    type ReadResponse,
    UpdateRequest,
    type UpdateResponse,
} from "@pulumi/pulumi/proto/provider_pb";
import type { Empty } from "google-protobuf/google/protobuf/empty_pb";
import { Struct, type JavaScriptValue } from "google-protobuf/google/protobuf/struct_pb";

const REPO = path.resolve(__dirname, "..", "..");

export type ResourceKind = "HostCommand" | "HostState" | "MicroVmProcess" | "NetBridge" | "NetTap" | "DaemonSetEndpoints";
export type ResourceType = `pcp-eval:index:${ResourceKind}`;
export const typeOf = (kind: ResourceKind): ResourceType => `pcp-eval:index:${kind}`;

export interface CheckFailure {
    property: string;
    reason: string;
}
export interface DiffResult {
    changes: boolean;
    replaces: string[];
    deleteBeforeReplace: boolean;
    /** The keys that changed, replacing or not (the plan shows them). */
    diffs: string[];
}

/** One resource type of the plugin, in the shape of a dynamic ResourceProvider. O: its outputs. */
export interface PluginResource<O extends object> {
    check(olds: object, news: object): Promise<{ inputs: Record<string, unknown>; failures: CheckFailure[] }>;
    diff(id: string, olds: object, news: object): Promise<DiffResult>;
    create(inputs: object): Promise<{ id: string; outs: O }>;
    /** id "" and props undefined: the resource is gone. */
    read(id: string, props: object): Promise<{ id: string; props?: O }>;
    update(id: string, olds: object, news: object): Promise<{ outs: O }>;
    delete(id: string, props: object): Promise<void>;
}

export interface StartOptions {
    /** The plugin's working directory (the engine starts it in the project directory); default the repository. */
    cwd?: string;
    /** Its environment; default this process's, as it is at start. */
    env?: NodeJS.ProcessEnv;
    /** Also pass its stderr on to this process's. */
    echo?: boolean;
    /** Starts the plugin binary (e.g. inside a network namespace); default node's spawn. */
    launch?: (file: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }) => ChildProcess;
    /** The gRPC target for the port the plugin printed (e.g. a forwarder's unix socket); default 127.0.0.1:PORT. */
    target?: (port: number) => Promise<string> | string;
}

export interface ProviderPlugin {
    readonly pid: number;
    /** Everything the plugin wrote to stderr so far. */
    stderr(): string;
    /**
     * The plugin's stderr from offset `from` on, once it matches `pattern` (a
     * call's progress lines can reach the pipe after its answer reached the
     * client); rejects with what came after `timeoutMs`.
     */
    stderrUntil(pattern: RegExp, from: number, timeoutMs?: number): Promise<string>;
    resource<O extends object = Record<string, unknown>>(kind: ResourceKind): PluginResource<O>;
    /** Ends the plugin (by its PID) and waits for it. */
    close(): Promise<void>;
}

/** Builds the plugin when its sources changed (provider/build.sh); the path of the binary. */
export function buildPlugin(): string {
    const r = spawnSync("bash", [path.join(REPO, "provider", "build.sh")], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`provider/build.sh failed (${r.status ?? r.signal}):\n${r.stderr}`);
    const { binDir } = JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "") as { binDir: string };
    return path.join(binDir, "pulumi-resource-pcp-eval");
}

const toStruct = (value: object): Struct =>
    // As the engine sends them: no undefined values.
    Struct.fromJavaScript(JSON.parse(JSON.stringify(value)) as { [key: string]: JavaScriptValue });
const fromStruct = <O>(s: Struct | undefined): O => (s?.toJavaScript() ?? {}) as unknown as O;

/** One unary call; a failure rejects with the plugin's own message (the gRPC status details). */
function unary<R>(label: string, call: (done: (err: grpc.ServiceError | null, res: R) => void) => void): Promise<R> {
    return new Promise<R>((resolve, reject) =>
        call((err, res) => (err ? reject(new Error(err.details || `${label}: ${err.message}`)) : resolve(res))),
    );
}

export async function startProviderPlugin(opts: StartOptions = {}): Promise<ProviderPlugin> {
    const bin = buildPlugin();
    const cwd = opts.cwd ?? REPO;
    const env = opts.env ?? { ...process.env };
    const child = opts.launch ? opts.launch(bin, [], { cwd, env }) : spawn(bin, [], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let spawnError: Error | undefined;
    child.once("error", (e) => (spawnError = e));
    const pid = child.pid;
    if (pid === undefined) throw new Error(`cannot start ${bin}`);
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
        stderr += d;
        if (opts.echo) process.stderr.write(d);
    });
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const port = await new Promise<number>((resolve, reject) => {
        const lines = readline.createInterface({ input: child.stdout! });
        lines.once("line", (line) => {
            lines.close();
            const n = Number(line.trim());
            if (Number.isInteger(n) && n > 0) resolve(n);
            else reject(new Error(`the plugin's first line is not a port: ${line}`));
        });
        void exited.then(() => reject(new Error(`the plugin exited before printing its port:\n${spawnError?.message ?? ""}${stderr}`)));
    });
    const client = new ResourceProviderClient(await (opts.target ?? ((p: number) => `127.0.0.1:${p}`))(port), grpc.credentials.createInsecure());
    await unary<ConfigureResponse>("Configure", (done) => client.configure(new ConfigureRequest().setAcceptsecrets(true).setAcceptresources(true), done));

    const resource = <O extends object>(kind: ResourceKind): PluginResource<O> => {
        const type = typeOf(kind);
        const urn = `urn:pulumi:test::pcp-eval::${type}::${kind.toLowerCase()}`;
        return {
            async check(olds, news) {
                const req = new CheckRequest().setUrn(urn).setType(type).setOlds(toStruct(olds)).setNews(toStruct(news));
                const res = await unary<CheckResponse>("Check", (done) => client.check(req, done));
                return {
                    inputs: fromStruct<Record<string, unknown>>(res.getInputs()),
                    failures: res.getFailuresList().map((f) => ({ property: f.getProperty(), reason: f.getReason() })),
                };
            },
            async diff(id, olds, news) {
                const req = new DiffRequest().setId(id).setUrn(urn).setType(type).setOlds(toStruct(olds)).setNews(toStruct(news));
                const res = await unary<DiffResponse>("Diff", (done) => client.diff(req, done));
                return {
                    changes: res.getChanges() === DiffResponse.DiffChanges.DIFF_SOME,
                    replaces: res.getReplacesList(),
                    deleteBeforeReplace: res.getDeletebeforereplace(),
                    diffs: res.getDiffsList(),
                };
            },
            async create(inputs) {
                const req = new CreateRequest().setUrn(urn).setType(type).setProperties(toStruct(inputs));
                const res = await unary<CreateResponse>("Create", (done) => client.create(req, done));
                return { id: res.getId(), outs: fromStruct<O>(res.getProperties()) };
            },
            async read(id, props) {
                const req = new ReadRequest().setId(id).setUrn(urn).setType(type).setProperties(toStruct(props));
                const res = await unary<ReadResponse>("Read", (done) => client.read(req, done));
                return res.getId() === "" ? { id: "" } : { id: res.getId(), props: fromStruct<O>(res.getProperties()) };
            },
            async update(id, olds, news) {
                const req = new UpdateRequest().setId(id).setUrn(urn).setType(type).setOlds(toStruct(olds)).setNews(toStruct(news));
                const res = await unary<UpdateResponse>("Update", (done) => client.update(req, done));
                return { outs: fromStruct<O>(res.getProperties()) };
            },
            async delete(id, props) {
                const req = new DeleteRequest().setId(id).setUrn(urn).setType(type).setProperties(toStruct(props));
                await unary<Empty>("Delete", (done) => client.delete(req, done));
            },
        };
    };

    return {
        pid,
        stderr: () => stderr,
        async stderrUntil(pattern, from, timeoutMs = 5_000) {
            const end = Date.now() + timeoutMs;
            while (!pattern.test(stderr.slice(from))) {
                if (Date.now() > end) throw new Error(`the plugin's stderr did not match ${pattern} within ${timeoutMs} ms; it has:\n${stderr.slice(from)}`);
                await new Promise((r) => setTimeout(r, 20));
            }
            return stderr.slice(from);
        },
        resource,
        async close() {
            client.close();
            if (child.exitCode === null && child.signalCode === null) process.kill(pid, "SIGTERM");
            await exited;
        },
    };
}
