import * as crypto from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { hostCommand, HostCommandBackend, HostCommandResource } from "./hostCommand";
import { constants } from "./constants";
import { projectRelative } from "./run";
import { parseScriptJson, scriptCommandOutput } from "./shell";

export interface NixBuildArgs {
    /** Which backend runs host commands (pcp-eval:hostCommands). */
    hostCommands: HostCommandBackend;
    /** A flake installable, `<flake>#<attr>`; exactly one of installable and expr. */
    installable?: pulumi.Input<string>;
    /** A Nix expression (built with --impure, e.g. a call of the flake's lib.mkMicrovmRunner). */
    expr?: pulumi.Input<string>;
    /**
     * Where the GC root goes, without its generation: the out-link is
     * `<outLink>-<key>`, the key a hash of the store path built (see buildKey).
     */
    outLink: string;
    /**
     * Rebuild when, and only when, this changes: the store path Nix will build,
     * evaluated beforehand (components/nixEval.ts). An edit that gives the same
     * path replaces nothing (a changed command only reruns the build as an
     * update, which Nix finds done).
     */
    fingerprint: pulumi.Input<string>;
    projectDir: string;
}

/**
 * The generation key of an out-link: a hash of the store path being built
 * (the build's trigger), so one store path always has one link name and a
 * new build never writes over the link the old generation's delete removes.
 */
export function buildKey(storePath: string): string {
    return crypto.createHash("sha256").update(storePath).digest("hex").slice(0, 12);
}

/**
 * `nix build` of one flake output into an out-link under the stack's state
 * directory. The out-link is a GC root, so the store path stays while the
 * stack needs it and is collectable after destroy.
 *
 * Each generation of a build has an out-link of its own (`<outLink>-<key>`),
 * so a replacement is safe in either order the engine may use: built before
 * the old one is removed (create-before-delete, local.Command's default), the
 * old delete removes only the old link; removed first (delete-before-replace,
 * the dynamic backend), the engine stops the VM that uses it first, because
 * the VM's runner input is this build's output. A fixed path lost the root
 * under a running VM in the first order: the new build wrote the link, then
 * the old resource's delete removed it.
 */
export class NixBuild extends pulumi.ComponentResource {
    public readonly storePath: pulumi.Output<string>;
    /** The out-link of the current generation, relative to the project when inside it. */
    public readonly outLink: pulumi.Output<string>;
    /** The command resource; depend on it to wait for the build. */
    public readonly build: HostCommandResource;

    constructor(name: string, args: NixBuildArgs, opts?: pulumi.ComponentResourceOptions) {
        super("pcp-eval:index:NixBuild", name, {}, opts);
        if ((args.installable === undefined) === (args.expr === undefined)) {
            throw new Error(`NixBuild ${name}: give exactly one of installable and expr`);
        }
        const base = projectRelative(args.outLink, args.projectDir);
        this.outLink = pulumi.output(args.fingerprint).apply((storePath) => `${base}-${buildKey(storePath)}`);
        const target = { installable: args.installable, expr: args.expr, impure: args.expr !== undefined };
        const buildCommand = scriptCommandOutput("nix-build.sh", "build", {
            "out-link": this.outLink,
            ...target,
            timeout: constants.timeoutsSeconds.build,
            // Already in the store (a VM brought up again after a destroy, or by another stack): only the
            // out-link is made, without a second evaluation of the flake on the way to the VM's start.
            expected: args.fingerprint,
        });
        this.build = hostCommand(
            args.hostCommands,
            `${name}-build`,
            {
                create: buildCommand,
                update: buildCommand,
                delete: scriptCommandOutput("nix-build.sh", "remove", { "out-link": this.outLink }),
                // Refresh compares the out-link with the recorded build: gone or pointing elsewhere is drift.
                check: scriptCommandOutput("nix-build.sh", "status", { "out-link": this.outLink }),
                dir: args.projectDir,
                triggers: [args.fingerprint],
            },
            { parent: this, customTimeouts: { create: `${constants.timeoutsSeconds.build + 30}s`, update: `${constants.timeoutsSeconds.build + 30}s` } },
        );
        this.storePath = this.build.stdout.apply((out) => parseScriptJson<{ storePath: string }>(out, `nix build ${name}`).storePath);
        this.registerOutputs({ storePath: this.storePath, outLink: this.outLink });
    }
}
