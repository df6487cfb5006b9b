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
 * Commands run with `/bin/sh -c` in `dir`, asynchronously, so independent
 * resources run in parallel.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { run, RunResult } from "./run";

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
}

export interface HostCommandOutputs extends HostCommandInputs {
    stdout: string;
    stderr: string;
}

export interface HostCommandArgs {
    create: pulumi.Input<string>;
    update?: pulumi.Input<string>;
    delete?: pulumi.Input<string>;
    dir: pulumi.Input<string>;
    triggers?: pulumi.Input<unknown[]>;
}

/** Runs `/bin/sh -c command` in dir (components/run.ts: stderr streamed, errors name the command and its stderr's tail). */
function runShell(command: string, dir: string): Promise<RunResult> {
    return run("/bin/sh", ["-c", command], { cwd: dir, label: command });
}

/** Exported for the unit test, which runs it as the engine would (serialized). */
export const hostCommandProvider: pulumi.dynamic.ResourceProvider<HostCommandInputs, HostCommandOutputs> = {
    async create(inputs) {
        const { stdout, stderr } = await runShell(inputs.create, inputs.dir);
        const crypto: typeof import("node:crypto") = require("node:crypto");
        return { id: crypto.randomUUID(), outs: { ...inputs, stdout, stderr } };
    },
    async diff(_id, olds, news) {
        const replaces = JSON.stringify(olds.triggers ?? []) !== JSON.stringify(news.triggers ?? []) ? ["triggers"] : [];
        const changes =
            replaces.length > 0 || (["create", "update", "delete", "dir"] as const).some((k) => (olds[k] ?? "") !== (news[k] ?? ""));
        return { changes, replaces, deleteBeforeReplace: true };
    },
    async update(_id, _olds, news) {
        const { stdout, stderr } = await runShell(news.update ?? news.create, news.dir);
        return { outs: { ...news, stdout, stderr } };
    },
    async delete(_id, props) {
        if (props.delete) await runShell(props.delete, props.dir);
    },
};

export class HostCommand extends pulumi.dynamic.Resource {
    public declare readonly stdout: pulumi.Output<string>;
    public declare readonly stderr: pulumi.Output<string>;

    constructor(name: string, args: HostCommandArgs, opts?: pulumi.CustomResourceOptions) {
        super(hostCommandProvider, name, { ...args, stdout: undefined, stderr: undefined }, opts, "pcp-eval", "HostCommand");
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
    return new command.local.Command(name, args, opts);
}
