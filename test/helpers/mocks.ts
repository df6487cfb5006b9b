/**
 * Runs a program under Pulumi's mocks and records what the engine would be
 * asked to register: type, name, parent, and the dependency URNs of each
 * resource (read from the real RegisterResource requests, so dependsOn edges
 * are checked as the engine would see them).
 */
import * as crypto from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import type { NixExpressions, StorePaths } from "../../components/nixEval";

export interface RecordedResource {
    type: string;
    name: string;
    urn: string;
    parent: string;
    dependencies: string[];
    custom: boolean;
    /** The provider reference ("<urn>::<id>"), "" for the engine's default. */
    provider: string;
    inputs: Record<string, unknown>;
    /** The types its aliases name (an alias given as a spec; a type-only alias keeps the name). */
    aliasTypes: string[];
}

interface RegisterRequest {
    getType(): string;
    getName(): string;
    getParent(): string;
    getDependenciesList(): string[];
    getCustom(): boolean;
    getProvider(): string;
    getAliasesList(): Array<{ getSpec(): { getType(): string } | undefined }>;
}

interface MockMonitorLike {
    registerResource(req: RegisterRequest, callback: (err: unknown, resp: unknown) => void): Promise<void>;
    newUrn(parent: string, type: string, name: string): string;
}

/** Fake outputs for the scripts' JSON lines, keyed on the command they run. */
function fakeStdout(create: string, triggers: unknown): string {
    if (create.includes("nix-build.sh build")) {
        const outLink = /--out-link (\S+)/.exec(create)?.[1] ?? "out";
        // A NixBuild's trigger is the store path evaluated before the build: nix builds that path.
        const planned = Array.isArray(triggers) && typeof triggers[0] === "string" && triggers[0].startsWith("/nix/store/") ? triggers[0] : undefined;
        // An out-link ends in its generation key (<link>-<12 hex>); the made-up store path is named after the link.
        const linkName = (outLink.split("/").pop() ?? "").replace(/-[0-9a-f]{12}$/, "");
        return JSON.stringify({ storePath: planned ?? `/nix/store/00000000000000000000000000000000-${linkName}`, outLink });
    }
    if (create.includes("oci.sh load")) return JSON.stringify({ image: "pcp-eval:00000000000000000000000000000000", loaded: true });
    if (create.includes("oci.sh ref")) return JSON.stringify({ image: "pcp-eval:00000000000000000000000000000000" });
    if (create.includes("grafana-password.sh read")) return JSON.stringify({ password: "mock-grafana-password" });
    if (create.includes("ssh-key.sh ensure")) return JSON.stringify({ publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockKey pcp-eval-test", created: true });
    return "{}";
}

export interface Recording {
    resources: RecordedResource[];
    byName(name: string): RecordedResource;
    has(name: string): boolean;
    /** Names of the resources whose URN `name` depends on. */
    dependencyNames(name: string): string[];
    childrenOf(name: string): RecordedResource[];
}

/**
 * Sets fresh mocks, runs `build`, waits for every registration, and returns
 * the recording plus what `build` returned with all outputs resolved.
 */
export async function recordProgram<T>(build: () => T | Promise<T>, options: { preview?: boolean; stack?: string } = {}): Promise<{ recording: Recording; result: T }> {
    const resources: RecordedResource[] = [];
    const inputsByTypeName = new Map<string, Record<string, unknown>>();
    await pulumi.runtime.setMocks(
        {
            newResource(args: pulumi.runtime.MockResourceArgs) {
                inputsByTypeName.set(`${args.type}::${args.name}`, args.inputs as Record<string, unknown>);
                const state: Record<string, unknown> = { ...args.inputs };
                if (args.type === "command:local:Command" || args.type === "pcp-eval:index:HostCommand") {
                    state.stdout = fakeStdout(String(args.inputs.create ?? ""), args.inputs.triggers);
                    state.stderr = "";
                }
                // A local.Command's HostState carries the command's stdout on.
                if (args.type === "pcp-eval:index:HostState") state.stdout = args.inputs.recorded;
                if (args.type === "pcp-eval:index:MicroVmProcess") {
                    state.pid = 4242;
                    state.startedAt = "2026-01-01T00:00:00Z";
                }
                if (args.type.startsWith("kubernetes:")) {
                    const metadata = (args.inputs.metadata ?? {}) as Record<string, unknown>;
                    state.metadata = { ...metadata, name: metadata.name ?? `${args.name}-generated` };
                }
                if (args.type === "docker:index/container:Container") state.name = args.inputs.name ?? args.name;
                return { id: `${args.name}-id`, state };
            },
            call(args: pulumi.runtime.MockCallArgs) {
                return args.inputs;
            },
        },
        "pcp-eval",
        options.stack ?? "test",
        options.preview ?? false,
    );
    // Reach into the mock monitor only to observe requests; behaviour is unchanged.
    const settings: { getMonitor(): MockMonitorLike; waitForRPCs(): Promise<void> } = require("@pulumi/pulumi/runtime/settings");
    const monitor = settings.getMonitor();
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req, callback) => {
        const urn = monitor.newUrn(req.getParent(), req.getType(), req.getName());
        resources.push({
            type: req.getType(),
            name: req.getName(),
            urn,
            parent: req.getParent(),
            dependencies: req.getDependenciesList(),
            custom: req.getCustom(),
            provider: req.getProvider(),
            inputs: {},
            aliasTypes: req.getAliasesList().map((a) => a.getSpec()?.getType() ?? ""),
        });
        return register(req, (err, resp) => {
            callback(err, resp);
        });
    };
    const result = await build();
    // Let every pending registration and output settle.
    for (let i = 0; i < 20; i++) {
        await new Promise((resolve) => setImmediate(resolve));
    }
    await settings.waitForRPCs();
    for (const r of resources) r.inputs = inputsByTypeName.get(`${r.type}::${r.name}`) ?? {};
    const byUrn = new Map(resources.map((r) => [r.urn, r]));
    const recording: Recording = {
        resources,
        has: (name) => resources.some((r) => r.name === name),
        byName(name) {
            const found = resources.find((r) => r.name === name);
            if (!found) throw new Error(`no resource named ${name}; have ${resources.map((r) => r.name).join(", ")}`);
            return found;
        },
        dependencyNames(name) {
            return this.byName(name).dependencies.map((urn) => byUrn.get(urn)?.name ?? urn);
        },
        childrenOf(name) {
            const parent = this.byName(name);
            return resources.filter((r) => r.parent === parent.urn);
        },
    };
    return { recording, result };
}

/** Resolves an Output (or plain value) under mocks. */
export function resolve<T>(value: pulumi.Input<T>): Promise<T> {
    return new Promise((res) => pulumi.output(value).apply((v) => { res(v as T); return v; }));
}

/**
 * Stands in for components/nixEval.ts evaluateStorePaths where the flake
 * cannot be evaluated (the dev stack's needs nixpkgs): a store path per name
 * whose hash is that of the expression, so a changed expression is a new path.
 */
export function fakeStorePaths(expressions: NixExpressions): Promise<StorePaths> {
    const paths: StorePaths = {};
    for (const [name, expr] of Object.entries(expressions)) {
        const hash = crypto.createHash("sha256").update(expr).digest("hex").slice(0, 32).replace(/[eotu]/g, "0");
        paths[name] = `/nix/store/${hash}-${name}`;
    }
    return Promise.resolve(paths);
}
