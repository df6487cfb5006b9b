/**
 * A shell command on this host as a Pulumi resource, served by pcp-eval's
 * own provider plugin (provider/hostcommand.go, built from this checkout, so
 * the engine downloads nothing for it).
 *
 * Two backends run the same commands (config pcp-eval:hostCommands):
 * - "command": @pulumi/command's local.Command, whose provider plugin Pulumi
 *   installs on first use. The default.
 * - "dynamic": the HostCommand resource below. It needs no downloaded plugin,
 *   so it runs on hosts that cannot download one: on this project's CI machines
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
 * - command: a small HostState beside the local.Command does the same
 *   (read, degraded, update runs the repair), and carries the command's
 *   stdout on, so a repair that changes it (a new key) reaches the resources
 *   that use it. A trigger on the local.Command would replace it instead, and
 *   a replacement deletes what the repair just made.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { hostResourceOptions, hostResourceType } from "./providerPlugin";

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

/** A host command served by the plugin (provider/hostcommand.go). */
export class HostCommand extends pulumi.CustomResource {
    public declare readonly stdout: pulumi.Output<string>;
    public declare readonly stderr: pulumi.Output<string>;
    public declare readonly live: pulumi.Output<Live>;

    constructor(name: string, args: HostCommandArgs, opts?: pulumi.CustomResourceOptions) {
        super(hostResourceType("HostCommand"), name, { ...args, stdout: undefined, stderr: undefined, live: undefined, drift: undefined }, hostResourceOptions("HostCommand", opts));
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

/** Refresh and repair for a local.Command's host state (see the file comment). */
export class HostState extends pulumi.CustomResource {
    public declare readonly stdout: pulumi.Output<string>;
    public declare readonly live: pulumi.Output<Live>;

    constructor(name: string, args: { [K in keyof HostStateInputs]: pulumi.Input<HostStateInputs[K]> }, opts?: pulumi.CustomResourceOptions) {
        super(hostResourceType("HostState"), name, { ...args, stdout: undefined, live: undefined, drift: undefined }, hostResourceOptions("HostState", opts));
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
