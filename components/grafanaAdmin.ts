import * as pulumi from "@pulumi/pulumi";
import { constants } from "./constants";
import { hostCommand, HostCommandBackend } from "./hostCommand";
import { MicroVm } from "./microVm";
import { parseScriptJson, scriptCommand } from "./shell";

export interface GrafanaAdminArgs {
    /** The grafana VM; its target says where SSH answers. */
    vm: MicroVm;
    hostCommands: HostCommandBackend;
    projectDir: string;
}

/**
 * The Grafana admin password of a grafana VM, as a secret. The guest
 * generates it at boot (so it is never in the Nix store); this reads it over
 * SSH once the VM is up (host/grafana-password.sh). The command's stdout is a
 * secret output too, so the password is encrypted in the stack state. A new
 * VM process (a new boot) reads it again.
 */
export class GrafanaAdmin extends pulumi.ComponentResource {
    public readonly user: string;
    public readonly password: pulumi.Output<string>;

    constructor(name: string, args: GrafanaAdminArgs, opts?: pulumi.ComponentResourceOptions) {
        super("pcp-eval:index:GrafanaAdmin", name, {}, opts);
        const ssh = args.vm.target.ssh;
        if (ssh === undefined) throw new Error(`GrafanaAdmin ${name}: the VM ${args.vm.vmName} has no SSH endpoint`);
        this.user = "admin";
        const read = hostCommand(
            args.hostCommands,
            `${name}-read`,
            {
                create: scriptCommand("grafana-password.sh", "read", {
                    host: ssh.host,
                    port: ssh.port,
                    user: ssh.user,
                    identity: ssh.identityFile,
                    timeout: constants.timeoutsSeconds.servicesGrafana,
                }),
                dir: args.projectDir,
                triggers: [args.vm.pid],
            },
            { parent: this, dependsOn: [args.vm], additionalSecretOutputs: ["stdout"] },
        );
        this.password = pulumi.secret(read.stdout.apply((out) => parseScriptJson<{ password: string }>(out, "grafana admin password").password));
        this.registerOutputs({ user: this.user, password: this.password });
    }
}
