import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { hostCommand, HostCommandBackend } from "./hostCommand";
import { parseScriptJson, scriptCommand } from "./shell";

export interface SshKeyArgs {
    /** Which backend runs host commands (pcp-eval:hostCommands). */
    hostCommands: HostCommandBackend;
    stateDir: string;
    stack: string;
    projectDir: string;
}

/**
 * A per-stack ed25519 key pair under the state directory. The VMs authorise
 * its public key, so SSH works without the password login the old packaging
 * enabled by default. Destroy removes the pair.
 */
export class SshKey extends pulumi.ComponentResource {
    public readonly publicKey: pulumi.Output<string>;
    public readonly privateKeyPath: string;

    constructor(name: string, args: SshKeyArgs, opts?: pulumi.ComponentResourceOptions) {
        super("pcp-eval:index:SshKey", name, {}, opts);
        const dir = path.join(args.stateDir, "ssh");
        this.privateKeyPath = path.join(dir, "id_ed25519");
        const keygen = hostCommand(
            args.hostCommands,
            `${name}-keygen`,
            {
                create: scriptCommand("ssh-key.sh", "ensure", { dir, comment: `pcp-eval-${args.stack}` }),
                delete: scriptCommand("ssh-key.sh", "remove", { dir }),
                // A key gone from disk is drift: the repair makes a new one, and the VMs that authorise it are rebuilt.
                check: scriptCommand("ssh-key.sh", "status", { dir }),
                dir: args.projectDir,
            },
            { parent: this },
        );
        const printed = keygen.stdout.apply((out) => parseScriptJson<{ publicKey: string }>(out, "ssh key").publicKey);
        // A preview does not know the output of a keygen it plans to update (a moved checkout changes
        // its dir), and an unknown key would plan every runner's replacement. The pair on disk is what
        // that update prints (ensure keeps an existing pair), so a preview reads it; up uses the output.
        const onDisk = pulumi.runtime.isDryRun() ? publicKeyOnDisk(this.privateKeyPath) : undefined;
        this.publicKey = onDisk !== undefined ? pulumi.output(onDisk) : printed;
        this.registerOutputs({ publicKey: this.publicKey, privateKeyPath: this.privateKeyPath });
    }
}

/** The public key of a complete pair at privateKeyPath (as ssh-key.sh prints it), or undefined. */
export function publicKeyOnDisk(privateKeyPath: string): string | undefined {
    try {
        if (!fs.statSync(privateKeyPath).isFile()) return undefined;
        const pub = fs.readFileSync(`${privateKeyPath}.pub`, "utf8").replace(/\n+$/, "");
        return pub === "" ? undefined : pub;
    } catch {
        return undefined;
    }
}
