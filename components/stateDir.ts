import * as pulumi from "@pulumi/pulumi";
import { hostCommand, HostCommandBackend } from "./hostCommand";
import { scriptCommand } from "./shell";

export interface StateDirArgs {
    /** Absolute path of the stack's state directory. */
    dir: string;
    projectDir: string;
    hostCommands: HostCommandBackend;
}

/**
 * The stack's state directory: made before every other part and, because
 * they all depend on it, removed after them on destroy. Removal takes only
 * empty directories, never a file, so a state directory pointed at a place
 * holding anything else keeps it.
 */
export class StateDir extends pulumi.ComponentResource {
    public readonly dir: string;
    /** Depend on this to run after the directory exists and before it goes. */
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: StateDirArgs, opts?: pulumi.ComponentResourceOptions) {
        super("pcp-eval:index:StateDir", name, {}, opts);
        this.dir = args.dir;
        this.ready = hostCommand(
            args.hostCommands,
            `${name}-dir`,
            {
                create: scriptCommand("state-dir.sh", "ensure", { dir: args.dir }),
                delete: scriptCommand("state-dir.sh", "clean", { dir: args.dir }),
                dir: args.projectDir,
            },
            { parent: this },
        );
        this.registerOutputs({ dir: this.dir });
    }
}

/**
 * Options that put a component and every resource below it after the state
 * directory (children do not inherit dependsOn; they do inherit
 * transformations), so destroy removes the directory last.
 */
export function afterStateDir(stateDir: StateDir | undefined): pulumi.ComponentResourceOptions {
    if (stateDir === undefined) return {};
    const ready = stateDir.ready;
    return {
        dependsOn: [ready],
        transformations: [(a) => ({ props: a.props, opts: pulumi.mergeOptions(a.opts, { dependsOn: [ready] }) })],
    };
}
