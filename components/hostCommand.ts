/**
 * A shell command on this host as a Pulumi resource, served by a dynamic
 * provider (it runs inside the Node.js language host's dynamic-provider
 * plugin, so the engine needs no extra provider binary).
 *
 * Why not @pulumi/command's local.Command: its provider plugin
 * (pulumi-resource-command) cannot be built here (the Go module proxy does not
 * serve github.com/pulumi/pulumi-command/provider) nor downloaded, so under the
 * real engine every local.Command fails. HostCommand keeps the subset of
 * local.Command's interface the components use, with the same semantics:
 *   create   runs on create; its stdout/stderr become outputs
 *   update   runs when an input other than triggers changes (default: create)
 *   delete   runs on delete
 *   triggers any change replaces the resource (delete, then create)
 * Commands run with `/bin/sh -c` in `dir`, asynchronously, so independent
 * resources run in parallel.
 */
import * as pulumi from "@pulumi/pulumi";

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

export type HostCommandArgs = { [K in keyof HostCommandInputs]: pulumi.Input<HostCommandInputs[K]> };

/** Runs `/bin/sh -c command` in dir; resolves with its output, rejects naming the exit status and stderr. */
function runShell(command: string, dir: string): Promise<{ stdout: string; stderr: string }> {
    // Required inside: the provider is serialized by closure capture.
    const childProcess: typeof import("node:child_process") = require("node:child_process");
    return new Promise((resolve, reject) => {
        const child = childProcess.spawn("/bin/sh", ["-c", command], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        child.stdout.on("data", (b: Buffer) => out.push(b));
        child.stderr.on("data", (b: Buffer) => err.push(b));
        child.on("error", reject);
        child.on("close", (code, signal) => {
            const stdout = Buffer.concat(out).toString("utf8").replace(/\n$/, "");
            const stderr = Buffer.concat(err).toString("utf8").replace(/\n$/, "");
            if (code === 0) {
                resolve({ stdout, stderr });
                return;
            }
            const status = signal ? `signal ${signal}` : `exit status ${code}`;
            const tail = stderr.split("\n").slice(-40).join("\n");
            reject(new Error(`command failed (${status}): ${command}\n${tail}`));
        });
    });
}

const provider: pulumi.dynamic.ResourceProvider<HostCommandInputs, HostCommandOutputs> = {
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
        super(provider, name, { ...args, stdout: undefined, stderr: undefined }, opts, "pcp-eval", "HostCommand");
    }
}
