/**
 * A shell command on this host as a Pulumi resource, served by a dynamic
 * provider (it runs inside the Node.js language host's dynamic-provider
 * plugin, so the engine needs no extra provider binary).
 *
 * Two backends run the same commands (config pcp-eval:hostCommands):
 * - "command": @pulumi/command's local.Command, whose provider plugin Pulumi
 *   installs on first use. The default.
 * - "dynamic": the HostCommand dynamic resource below. It needs no plugin, so
 *   it runs on hosts that cannot download one: on this project's CI machines
 *   the command plugin can neither be downloaded nor built (the Go module
 *   proxy refuses github.com/pulumi/pulumi-command/provider), and the ci
 *   stack uses it under the real engine.
 * HostCommand keeps the subset of local.Command's interface the components
 * use, with the same semantics:
 *   create   runs on create; its stdout/stderr become outputs
 *   update   runs when an input other than triggers changes (default: create)
 *   delete   runs on delete
 *   triggers any change replaces the resource (delete, then create)
 *   check    (ours) a read-only command printing one JSON line of the host
 *            state as it is now, shaped like create's last line; see below
 * Commands run with `/bin/sh -c` in `dir`, asynchronously, so independent
 * resources run in parallel.
 *
 * Refresh and drift. local.Command has no read (pulumi-command issue 432), so
 * refresh cannot see an out-link, image tag or key that went. A resource with
 * a `check` gets one in both backends:
 * - dynamic: HostCommand's read runs the check and compares it, key by key,
 *   with the recorded stdout; a difference marks it "degraded" (refresh shows
 *   the change, and why), and a degraded resource diffs as an update, so the
 *   next `up` runs its idempotent update command, which repairs it.
 * - command: a small dynamic HostState beside the local.Command does the same
 *   (read, degraded, update runs the repair), and carries the command's
 *   stdout on, so a repair that changes it (a new key) reaches the resources
 *   that use it. A trigger on the local.Command would replace it instead, and
 *   a replacement deletes what the repair just made.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { projectWorkDir, run, RunResult } from "./run";

export type HostCommandBackend = "command" | "dynamic";
export const hostCommandBackends: readonly HostCommandBackend[] = ["command", "dynamic"];

export interface HostCommandInputs {
    create: string;
    update?: string;
    delete?: string;
    /** Working directory of every command. */
    dir: string;
    /** Any change replaces the resource. */
    triggers?: unknown[];
    /** Read-only command printing the host state now, as one JSON line shaped like create's. */
    check?: string;
}

/** "degraded": the host no longer holds what the resource made (see `drift`). */
export type Live = "ok" | "degraded";

export interface HostCommandOutputs extends HostCommandInputs {
    stdout: string;
    stderr: string;
    live?: Live;
    /** What differs between the recorded output and the host, for the refresh diff. */
    drift?: string;
}

export interface HostCommandArgs {
    create: pulumi.Input<string>;
    update?: pulumi.Input<string>;
    delete?: pulumi.Input<string>;
    dir: pulumi.Input<string>;
    triggers?: pulumi.Input<unknown[]>;
    check?: pulumi.Input<string>;
}

/** Runs `/bin/sh -c command` in dir (components/run.ts: stderr streamed, errors name the command and its stderr's tail). */
function runShell(command: string, dir: string): Promise<RunResult> {
    return run("/bin/sh", ["-c", command], { cwd: projectWorkDir(dir), label: command });
}

/**
 * The keys of the check's JSON line whose value differs from the recorded
 * stdout's last JSON line, as "key: recorded X, now Y"; "" when none does.
 */
export function driftOf(recorded: string, now: string): string {
    const last = (text: string): Record<string, unknown> => {
        try {
            const value: unknown = JSON.parse(text.trim().split("\n").pop() ?? "");
            return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};
        } catch {
            return {};
        }
    };
    const before = last(recorded);
    const after = last(now);
    return Object.keys(after)
        .filter((k) => JSON.stringify(before[k] ?? null) !== JSON.stringify(after[k] ?? null))
        .map((k) => `${k}: recorded ${JSON.stringify(before[k] ?? null)}, now ${JSON.stringify(after[k] ?? null)}`)
        .join("; ");
}

/** Runs the check in dir and compares; a failing check is an error that names it (refresh shows it). */
async function observe(check: string, dir: string, recorded: string): Promise<{ live: Live; drift: string }> {
    const { stdout } = await runShell(check, dir);
    const drift = driftOf(recorded, stdout);
    return { live: drift === "" ? "ok" : "degraded", drift };
}

/** Exported for the tests, which drive it against real files. */
export const hostCommandProvider: pulumi.dynamic.ResourceProvider<HostCommandInputs, HostCommandOutputs> = {
    async create(inputs) {
        const { stdout, stderr } = await runShell(inputs.create, inputs.dir);
        const crypto: typeof import("node:crypto") = require("node:crypto");
        return { id: crypto.randomUUID(), outs: { ...inputs, stdout, stderr, live: "ok", drift: "" } };
    },
    async read(id, props) {
        if (props === undefined || !props.check) return { id, props };
        return { id, props: { ...props, ...(await observe(props.check, props.dir, props.stdout)) } };
    },
    async diff(_id, olds, news) {
        const replaces = JSON.stringify(olds.triggers ?? []) !== JSON.stringify(news.triggers ?? []) ? ["triggers"] : [];
        const changes =
            replaces.length > 0 ||
            olds.live === "degraded" ||
            (["create", "update", "delete", "dir", "check"] as const).some((k) => (olds[k] ?? "") !== (news[k] ?? ""));
        return { changes, replaces, deleteBeforeReplace: true };
    },
    async update(_id, _olds, news) {
        const { stdout, stderr } = await runShell(news.update ?? news.create, news.dir);
        return { outs: { ...news, stdout, stderr, live: "ok", drift: "" } };
    },
    async delete(_id, props) {
        if (props.delete) await runShell(props.delete, props.dir);
    },
};

export class HostCommand extends pulumi.dynamic.Resource {
    public declare readonly stdout: pulumi.Output<string>;
    public declare readonly stderr: pulumi.Output<string>;
    public declare readonly live: pulumi.Output<Live>;

    constructor(name: string, args: HostCommandArgs, opts?: pulumi.CustomResourceOptions) {
        super(hostCommandProvider, name, { ...args, stdout: undefined, stderr: undefined, live: undefined, drift: undefined }, opts, "pcp-eval", "HostCommand");
    }
}

/** Inputs of the HostState companion of a local.Command. */
export interface HostStateInputs {
    check: string;
    /** The idempotent command that restores the state (the command's update). */
    repair: string;
    dir: string;
    /** The local.Command's stdout. */
    recorded: string;
}

export interface HostStateOutputs extends HostStateInputs {
    /** The latest output: the command's, or the repair's after a repair. */
    stdout: string;
    live: Live;
    drift: string;
}

/** Exported for the tests, which drive it against real files. */
export const hostStateProvider: pulumi.dynamic.ResourceProvider<HostStateInputs, HostStateOutputs> = {
    async create(inputs) {
        const crypto: typeof import("node:crypto") = require("node:crypto");
        return { id: crypto.randomUUID(), outs: { ...inputs, stdout: inputs.recorded, live: "ok", drift: "" } };
    },
    async read(id, props) {
        if (props === undefined) return { id, props };
        return { id, props: { ...props, ...(await observe(props.check, props.dir, props.stdout)) } };
    },
    async diff(_id, olds, news) {
        const changes = olds.live === "degraded" || (["check", "repair", "dir", "recorded"] as const).some((k) => olds[k] !== news[k]);
        return { changes, replaces: [] };
    },
    async update(_id, olds, news) {
        // The command ran again itself: its output is the state. Otherwise repair what refresh found.
        if (olds.recorded !== news.recorded || olds.live !== "degraded") {
            return { outs: { ...news, stdout: news.recorded, live: "ok", drift: "" } };
        }
        const { stdout } = await runShell(news.repair, news.dir);
        return { outs: { ...news, stdout, live: "ok", drift: "" } };
    },
};

/** Refresh and repair for a local.Command's host state (see the file comment). */
export class HostState extends pulumi.dynamic.Resource {
    public declare readonly stdout: pulumi.Output<string>;
    public declare readonly live: pulumi.Output<Live>;

    constructor(name: string, args: { [K in keyof HostStateInputs]: pulumi.Input<HostStateInputs[K]> }, opts?: pulumi.CustomResourceOptions) {
        super(hostStateProvider, name, { ...args, stdout: undefined, live: undefined, drift: undefined }, opts, "pcp-eval", "HostState");
    }
}

/** What the components use of either backend. */
export type HostCommandResource = pulumi.CustomResource & { readonly stdout: pulumi.Output<string> };

/** A host command on the chosen backend; both take the same arguments. */
export function hostCommand(
    backend: HostCommandBackend,
    name: string,
    args: HostCommandArgs,
    opts?: pulumi.CustomResourceOptions,
): HostCommandResource {
    if (backend === "dynamic") return new HostCommand(name, args, opts);
    const { check, ...commandArgs } = args;
    const cmd = new command.local.Command(name, commandArgs, opts);
    if (check === undefined) return cmd;
    // Users of the output and of the resource go through the HostState, which comes after the command.
    return new HostState(
        `${name}-state`,
        { check, repair: args.update ?? args.create, dir: args.dir, recorded: cmd.stdout },
        { parent: opts?.parent, dependsOn: [cmd] },
    );
}
