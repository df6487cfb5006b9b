import * as pulumi from "@pulumi/pulumi";
import { hostCommand, HostCommandBackend, HostCommandResource } from "./hostCommand";
import { constants } from "./constants";
import { parseScriptJson, scriptCommandOutput } from "./shell";

export interface NixBuildArgs {
    /** Which backend runs host commands (pcp-eval:hostCommands). */
    hostCommands: HostCommandBackend;
    /** A flake installable, `<flake>#<attr>`; exactly one of installable and expr. */
    installable?: pulumi.Input<string>;
    /** A Nix expression (built with --impure, e.g. a call of the flake's lib.mkMicrovmRunner). */
    expr?: pulumi.Input<string>;
    /** GC root kept while the resource exists; its removal is the delete. */
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
 * `nix build` of one flake output into an out-link under the stack's state
 * directory. The out-link is a GC root, so the store path stays while the
 * stack needs it and is collectable after destroy.
 */
export class NixBuild extends pulumi.ComponentResource {
    public readonly storePath: pulumi.Output<string>;
    public readonly outLink: string;
    /** The command resource; depend on it to wait for the build. */
    public readonly build: HostCommandResource;

    constructor(name: string, args: NixBuildArgs, opts?: pulumi.ComponentResourceOptions) {
        super("pcp-eval:index:NixBuild", name, {}, opts);
        if ((args.installable === undefined) === (args.expr === undefined)) {
            throw new Error(`NixBuild ${name}: give exactly one of installable and expr`);
        }
        this.outLink = args.outLink;
        const target = { installable: args.installable, expr: args.expr, impure: args.expr !== undefined };
        const buildCommand = scriptCommandOutput("nix-build.sh", "build", {
            "out-link": args.outLink,
            ...target,
            timeout: constants.timeoutsSeconds.build,
        });
        this.build = hostCommand(
            args.hostCommands,
            `${name}-build`,
            {
                create: buildCommand,
                update: buildCommand,
                delete: scriptCommandOutput("nix-build.sh", "remove", { "out-link": args.outLink }),
                dir: args.projectDir,
                triggers: [args.fingerprint],
            },
            { parent: this, customTimeouts: { create: `${constants.timeoutsSeconds.build + 30}s`, update: `${constants.timeoutsSeconds.build + 30}s` } },
        );
        this.storePath = this.build.stdout.apply((out) => parseScriptJson<{ storePath: string }>(out, `nix build ${name}`).storePath);
        this.registerOutputs({ storePath: this.storePath, outLink: this.outLink });
    }
}
